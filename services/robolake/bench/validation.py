"""How much chunk validation costs next to producing the chunk.

Run ``python -m robolake.bench.validation [--out bench-results/validation.json]``.

For each chunk kind, a ~4 MiB chunk is produced the way a device would -- build the Arrow table
from samples already in memory (numpy arrays, JPEG bytes from the encoder), then serialise it as
an IPC stream -- and validated the way the collector does. The figure that matters is the ratio
validate / produce, measured in the same run on the same machine; the JPEG encoding a real device
also pays is reported as context, not included in ``produce``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from robolake.episode.chunks import encode_chunk, validate_chunk
from robolake.episode.ids import format_timestamp_ns
from robolake.episode.manifest import EpisodeManifest, parse_manifest
from robolake.episode.stream_types import default_registry
from robolake.episode.synthetic import SyntheticSpec, frame_pool, generate_episode
from robolake.episode.topics import DEFAULT_MAX_CHUNK_BYTES

logger = logging.getLogger(__name__)

#: Target chunk size: the default limit, minus room for framing.
TARGET_BYTES = DEFAULT_MAX_CHUNK_BYTES - 64 * 1024


@dataclass(frozen=True)
class Result:
    """Timings of one chunk kind; times are medians in milliseconds."""

    chunk: str
    rows: int
    chunk_bytes: int
    produce_ms: float
    validate_ms: float
    ratio: float
    jpeg_encode_ms: float | None = None


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    for _ in range(3):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e3


def _episode_manifest(hours: int = 2) -> tuple[EpisodeManifest, int]:
    """A synthetic humanoid manifest stretched to ``hours`` so any chunk's rows fit its range."""
    episode = generate_episode(SyntheticSpec(duration_s=1.0, frame_pool=2))
    document = dict(episode.manifest_document)
    start = episode.manifest.started_at_ns
    document["ended_at"] = format_timestamp_ns(start + hours * 3600 * 1_000_000_000)
    return parse_manifest(document), start


def bench_image(manifest: EpisodeManifest, start: int, repeats: int) -> Result:
    """~4 MiB of 640x480 JPEG frames of one camera."""
    stream_type = default_registry().get("image", 1)
    pool = frame_pool(0, 0, 640, 480, 16)
    frames: list[bytes] = pool.to_pylist()
    rows = int(TARGET_BYTES // (sum(map(len, frames)) / len(frames)))
    data = [frames[i % len(frames)] for i in range(rows)]
    t_ns = start + np.arange(rows, dtype=np.int64) * 33_333_333

    def produce() -> bytes:
        table = pa.Table.from_arrays(
            [
                pa.array(t_ns),
                pa.repeat(pa.scalar("jpeg", pa.string()), rows),
                pa.repeat(pa.scalar(640, pa.int32()), rows),
                pa.repeat(pa.scalar(480, pa.int32()), rows),
                pa.array(data, pa.binary()),
            ],
            schema=stream_type.wire_schema,
        )
        return encode_chunk(table, stream_type)

    chunk = produce()
    pixels = np.asarray(Image.open(io.BytesIO(frames[0])).convert("RGB"))

    def jpeg() -> None:
        Image.fromarray(pixels).save(io.BytesIO(), format="JPEG", quality=85)

    per_frame = _median_ms(jpeg, max(5, repeats // 4))
    return _result(
        "image (640x480 jpeg)",
        rows,
        chunk,
        produce,
        manifest,
        "cam_head",
        repeats,
        jpeg_encode_ms=per_frame * rows,
    )


def bench_joint_state(manifest: EpisodeManifest, start: int, repeats: int) -> Result:
    """~4 MiB of 29-joint state rows (about 2 minutes at 100 Hz)."""
    stream_type = default_registry().get("joint_state", 1)
    joints = 29
    row_bytes = 8 + 3 * (4 + 4 * joints)
    rows = TARGET_BYTES // row_bytes
    rng = np.random.default_rng(0)
    t_ns = start + np.arange(rows, dtype=np.int64) * 10_000_000
    position, velocity, effort = (
        rng.normal(0, 1, (rows, joints)).astype(np.float32) for _ in range(3)
    )
    offsets = np.arange(0, rows * joints + 1, joints, dtype=np.int32)

    def produce() -> bytes:
        off = pa.array(offsets)
        table = pa.Table.from_arrays(
            [
                pa.array(t_ns),
                pa.ListArray.from_arrays(off, pa.array(position.ravel())),
                pa.ListArray.from_arrays(off, pa.array(velocity.ravel())),
                pa.ListArray.from_arrays(off, pa.array(effort.ravel())),
            ],
            schema=stream_type.wire_schema,
        )
        return encode_chunk(table, stream_type)

    return _result(
        "joint_state (29 joints)", rows, produce(), produce, manifest, "joint_state", repeats
    )


def bench_imu(manifest: EpisodeManifest, start: int, repeats: int) -> Result:
    """~4 MiB of IMU rows (fixed-size lists)."""
    stream_type = default_registry().get("imu", 1)
    rows = TARGET_BYTES // (8 + 4 * 10)
    rng = np.random.default_rng(1)
    t_ns = start + np.arange(rows, dtype=np.int64) * 5_000_000
    gyro, accel = (rng.normal(0, 1, rows * 3).astype(np.float32) for _ in range(2))
    quat = rng.normal(0, 1, rows * 4).astype(np.float32)

    def produce() -> bytes:
        table = pa.Table.from_arrays(
            [
                pa.array(t_ns),
                pa.FixedSizeListArray.from_arrays(pa.array(gyro), 3),
                pa.FixedSizeListArray.from_arrays(pa.array(accel), 3),
                pa.FixedSizeListArray.from_arrays(pa.array(quat), 4),
            ],
            schema=stream_type.wire_schema,
        )
        return encode_chunk(table, stream_type)

    return _result("imu", rows, produce(), produce, manifest, "imu", repeats)


def _result(
    name: str,
    rows: int,
    chunk: bytes,
    produce: Callable[[], bytes],
    manifest: EpisodeManifest,
    stream: str,
    repeats: int,
    *,
    jpeg_encode_ms: float | None = None,
) -> Result:
    validate_chunk(chunk, manifest, stream)  # must pass, or the timing means nothing
    produce_ms = _median_ms(produce, repeats)
    validate_ms = _median_ms(lambda: validate_chunk(chunk, manifest, stream), repeats)
    return Result(
        chunk=name,
        rows=rows,
        chunk_bytes=len(chunk),
        produce_ms=round(produce_ms, 4),
        validate_ms=round(validate_ms, 4),
        ratio=round(validate_ms / produce_ms, 4),
        jpeg_encode_ms=round(jpeg_encode_ms, 2) if jpeg_encode_ms is not None else None,
    )


def run(repeats: int = 50) -> list[Result]:
    """Measure every chunk kind."""
    manifest, start = _episode_manifest()
    return [
        bench_image(manifest, start, repeats),
        bench_joint_state(manifest, start, repeats),
        bench_imu(manifest, start, repeats),
    ]


def _table(results: Sequence[Result]) -> str:
    header = (
        f"{'chunk':<24} {'rows':>7} {'bytes':>9} {'produce ms':>11} {'validate ms':>12} "
        f"{'ratio':>7}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(
            f"{r.chunk:<24} {r.rows:>7} {r.chunk_bytes:>9} {r.produce_ms:>11.3f} "
            f"{r.validate_ms:>12.3f} {r.ratio:>7.3f}"
        )
    for r in results:
        if r.jpeg_encode_ms is not None:
            lines.append(
                f"context: JPEG-encoding the {r.rows} frames of the image chunk takes "
                f"~{r.jpeg_encode_ms:.0f} ms on this machine (not part of produce)"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m robolake.bench.validation", description=__doc__
    )
    parser.add_argument("--out", type=Path, help="write results as JSON to this file")
    parser.add_argument("--repeats", type=int, default=50, help="timed runs per measurement")
    args = parser.parse_args(argv)
    results = run(args.repeats)
    print(_table(results))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        document: dict[str, Any] = {
            "benchmark": "chunk validation vs production",
            "figure": "ratio = validate_ms / produce_ms (medians); produce = build + serialize",
            "max_chunk_bytes": DEFAULT_MAX_CHUNK_BYTES,
            "repeats": args.repeats,
            "python": sys.version.split()[0],
            "pyarrow": pa.__version__,
            "machine": platform.machine(),
            "results": [asdict(r) for r in results],
        }
        args.out.write_text(json.dumps(document, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
