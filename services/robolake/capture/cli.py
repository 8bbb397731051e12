"""``robolake upload`` (a device uploading recorded data) and ``robolake simulate``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from robolake.capture.errors import CaptureError

ENV_COLLECTOR_URL = "ROBOLAKE_COLLECTOR_URL"
ENV_DEVICE_TOKEN = "ROBOLAKE_DEVICE_TOKEN"


def _default_spool() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(os.environ.get("ROBOLAKE_SPOOL_DIR") or Path(base) / "robolake" / "spool")


def add_parsers(subparsers: Any) -> None:
    """Register ``robolake upload`` and ``robolake simulate``."""
    upload = subparsers.add_parser(
        "upload",
        help="upload a recorded episode (manifest.json + one Arrow/Parquet file per stream)",
        description=(
            "Upload a recorded episode directory: manifest.json (schemas/manifest.v1.schema.json) "
            "and, per declared stream, <stream>.arrow (Arrow IPC stream or file) or "
            "<stream>.parquet. Chunks are spooled first; if the upload is interrupted, run the "
            "command again (or with --resume-only) and it continues where it stopped."
        ),
    )
    upload.add_argument("path", type=Path, nargs="?", help="episode directory")
    upload.add_argument(
        "--collector", default=os.environ.get(ENV_COLLECTOR_URL, "http://127.0.0.1:8080"),
        help=f"collector URL (env {ENV_COLLECTOR_URL}, default http://127.0.0.1:8080)",
    )  # fmt: skip
    upload.add_argument(
        "--token", default=os.environ.get(ENV_DEVICE_TOKEN),
        help=f"this device's bearer token (env {ENV_DEVICE_TOKEN}; never logged)",
    )  # fmt: skip
    upload.add_argument("--spool", type=Path, default=_default_spool(), help="spool directory")
    upload.add_argument("--spool-cap-gb", type=float, default=20.0, help="spool size cap, GB")
    upload.add_argument("--resume-only", action="store_true", help="only finish spooled uploads")
    upload.add_argument("--concurrency", type=int, default=4, help="parallel chunk uploads")
    upload.add_argument(
        "--max-chunk-bytes", type=int, default=4 * 1024 * 1024,
        help="largest chunk to cut (the collector's limit, default 4 MiB)",
    )  # fmt: skip
    upload.set_defaults(func=_upload)

    sim = subparsers.add_parser(
        "simulate",
        help="emulate many capture points uploading synthetic episodes",
        description=(
            "Enrol N simulated devices in the device registry and have each record and upload "
            "synthetic humanoid episodes through its own spool, at a target aggregate rate. "
            "Shows live progress; ends with a summary (episodes, chunks, GB, MB/s, ack latency "
            "p50/p99, retries, errors by kind)."
        ),
    )
    sim.add_argument("--capture-points", type=int, default=1000, help="simulated capture points")
    sim.add_argument("--duration", type=float, default=60.0, help="seconds of new episodes")
    sim.add_argument("--rate", type=float, default=20.0, help="target aggregate MB/s")
    sim.add_argument("--episode-seconds", type=float, default=5.0, help="length of an episode")
    sim.add_argument("--cameras", type=int, default=1, help="cameras per robot")
    sim.add_argument("--width", type=int, default=320, help="camera width (px)")
    sim.add_argument("--height", type=int, default=240, help="camera height (px)")
    sim.add_argument("--camera-hz", type=float, default=15.0, help="camera frame rate")
    sim.add_argument(
        "--collector", default=os.environ.get(ENV_COLLECTOR_URL, "http://127.0.0.1:8080"),
        help=f"collector URL (env {ENV_COLLECTOR_URL})",
    )  # fmt: skip
    sim.add_argument("--devices-file", type=Path, default=None, help="device registry to enrol in")
    sim.add_argument("--spool", type=Path, default=None, help="spool root (default: temp dir)")
    sim.add_argument("--connections", type=int, default=256, help="HTTP connection pool size")
    sim.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    sim.add_argument("--summary-json", type=Path, default=None, help="write the summary here")
    sim.set_defaults(func=_simulate)


def _read_stream(folder: Path, stream: str) -> pa.Table | None:
    for suffix in (".arrow", ".arrows", ".feather"):
        path = folder / f"{stream}{suffix}"
        if path.is_file():
            with pa.memory_map(str(path)) as source:
                try:
                    return pa.ipc.open_stream(source).read_all()
                except pa.ArrowInvalid:
                    source.seek(0)
                    return pa.ipc.open_file(source).read_all()
    path = folder / f"{stream}.parquet"
    if path.is_file():
        return pq.read_table(path)
    return None


async def _run_upload(args: argparse.Namespace) -> int:
    import aiohttp

    from robolake.capture.client import CaptureClient
    from robolake.capture.spool import Spool
    from robolake.capture.uploader import Uploader

    if not args.token:
        raise CaptureError(f"no device token: pass --token or set {ENV_DEVICE_TOKEN}")
    spool = Spool(args.spool, cap_bytes=int(args.spool_cap_gb * 1e9))
    async with aiohttp.ClientSession() as session:
        uploader = Uploader(session, args.collector, args.token)
        client = CaptureClient(
            uploader, spool, concurrency=args.concurrency, max_chunk_bytes=args.max_chunk_bytes
        )
        for outcome in await client.resume():
            print(f"resumed {outcome.episode_id}: {outcome.chunks} chunks, "
                  f"completed={outcome.completed}", file=sys.stderr)  # fmt: skip
        if args.resume_only or args.path is None:
            return 0
        manifest_path = args.path / "manifest.json"
        if not manifest_path.is_file():
            raise CaptureError(f"{manifest_path} not found: an episode directory needs one")
        manifest = manifest_path.read_text()
        recorder = await client.open_episode(manifest)
        for decl in recorder.manifest.streams:
            table = _read_stream(args.path, decl.name)
            if table is None:
                print(f"  {decl.name}: no file, uploading no rows", file=sys.stderr)
                continue
            done = recorder.spooled_rows(decl.name)
            if done:
                print(f"  {decl.name}: {done} rows already spooled, continuing", file=sys.stderr)
            if table.num_rows > done:
                await recorder.append(decl.name, table.slice(done))
            print(f"  {decl.name}: {table.num_rows - done} rows queued", file=sys.stderr)
        outcome = await recorder.close()
        summary = {
            "episode_id": outcome.episode_id,
            "chunks": outcome.chunks,
            "rejected": outcome.rejected,
            "completed": outcome.completed,
        }
        print(json.dumps(summary))
        return 0 if not outcome.rejected else 2


def _upload(args: argparse.Namespace) -> int:
    return asyncio.run(_run_upload(args))


def _simulate(args: argparse.Namespace) -> int:
    import tempfile

    from robolake.capture.simulator import SimulationConfig, simulate, write_summary
    from robolake.devices.registry import default_devices_file

    with tempfile.TemporaryDirectory(prefix="robolake-sim-") as tmp:
        config = SimulationConfig(
            collector_url=args.collector,
            devices_file=args.devices_file or default_devices_file(),
            spool_dir=args.spool or Path(tmp) / "spool",
            capture_points=args.capture_points,
            duration_s=args.duration,
            rate_mb_s=args.rate,
            episode_seconds=args.episode_seconds,
            cameras=args.cameras,
            width=args.width,
            height=args.height,
            camera_hz=args.camera_hz,
            connections=args.connections,
            seed=args.seed,
        )
        result = asyncio.run(simulate(config))
    print(result.render())
    if args.summary_json:
        write_summary(result, args.summary_json)
    return 0 if result.failed_episodes == 0 else 1
