"""``robolake upload`` (a device uploading recorded data) and ``robolake simulate``."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from robolake.capture.errors import CaptureError
from robolake.recordings.hdf5 import is_hdf5
from robolake.recordings.rosbag import is_bag

if TYPE_CHECKING:
    from robolake.capture.client import CaptureClient
    from robolake.recordings import PreparedRecording

ENV_COLLECTOR_URL = "ROBOLAKE_COLLECTOR_URL"
ENV_DEVICE_TOKEN = "ROBOLAKE_DEVICE_TOKEN"


def _default_spool() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(os.environ.get("ROBOLAKE_SPOOL_DIR") or Path(base) / "robolake" / "spool")


def add_parsers(subparsers: Any) -> None:
    """Register ``robolake upload`` and ``robolake simulate``."""
    upload = subparsers.add_parser(
        "upload",
        help="upload a recorded episode: an episode directory, a ROS 2 bag or an HDF5 file",
        description=(
            "Upload a recorded episode directory: manifest.json (schemas/manifest.v1.schema.json) "
            "and, per declared stream, <stream>.arrow (Arrow IPC stream or file) or "
            "<stream>.parquet; or a ROS 2 bag (.mcap, .db3 or a rosbag2 directory) or an HDF5 "
            "episode (.hdf5/.h5, ACT or robomimic layout), converted on the device "
            "(docs/recordings.md). Chunks are spooled first; if the upload is "
            "interrupted, run the command again (or with --resume-only) and it continues where "
            "it stopped."
        ),
    )
    upload.add_argument(
        "path", type=Path, nargs="?",
        help="episode directory, a ROS 2 bag (.mcap/.db3 file or rosbag2 directory) or an "
        "HDF5 episode file (.hdf5/.h5)",
    )  # fmt: skip
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
    bag = upload.add_argument_group(
        "ROS 2 bags and HDF5 episodes",
        "A recording becomes an episode whose id derives from its content and the device, so "
        "the same file uploaded again (renamed, from a restarted device) is the same episode, "
        "stored once. What a recording cannot know comes from these flags or a sidecar JSON "
        "file (DIR/robolake.json or FILE.robolake.json). See docs/recordings.md.",
    )
    bag.add_argument(
        "--mapping", type=Path,
        help="topic (bag) or dataset (HDF5) -> stream mapping file (YAML or JSON)",
    )  # fmt: skip
    bag.add_argument("--sidecar", type=Path, help="JSON file with the manifest's other fields")
    bag.add_argument("--device-id", help="this device's id (the token's device)")
    bag.add_argument("--capture-point", dest="capture_point_id", help="capture point id")
    bag.add_argument("--robot-type", help="robot model, e.g. ur5e")
    bag.add_argument("--scene", help="hospital, mall, warehouse, factory, home, lab or other")
    bag.add_argument("--task", help="the natural-language instruction the robot was given")
    bag.add_argument("--operator", help="pseudonymous operator id")
    bag.add_argument("--tag", action="append", dest="tags", default=[], help="a tag (repeatable)")
    bag.add_argument("--license", help="licence of the recording (with --consent: the rights)")
    bag.add_argument("--consent", choices=("obtained", "not_required"), help="consent status")
    bag.add_argument("--consent-reference", help="where the consent record is kept")
    hdf5 = upload.add_argument_group(
        "HDF5 episodes",
        "ACT/ALOHA files (/observations/qpos, /observations/images/<cam>, /action) and "
        "robomimic files (data/demo_N, each demo one episode). They hold no timestamps: row i "
        "is at started-at + i / rate-hz.",
    )
    hdf5.add_argument(
        "--rate-hz", type=float,
        help="frames per second (default: sidecar, mapping file, robomimic's env_args "
        "control_freq, else 50 as ACT records)",
    )  # fmt: skip
    hdf5.add_argument(
        "--started-at",
        help="when the episode began, RFC 3339 (default: sidecar, else the file's modification "
        "time taken as its end)",
    )  # fmt: skip
    hdf5.add_argument(
        "--joint-names", type=lambda text: [n.strip() for n in text.split(",")],
        help="comma-separated joint names of qpos/qvel/effort (default: joint_0, joint_1, ...)",
    )  # fmt: skip
    hdf5.add_argument(
        "--demo", type=int, help="upload only robomimic's data/demo_N (default: every demo)"
    )
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
    recordings: list[PreparedRecording] = []
    if args.path is not None and not args.resume_only:
        if not args.path.exists():
            raise CaptureError(f"{args.path} does not exist")
        # Checked whole before anything is registered or spooled: a bad recording leaves
        # nothing behind (and no half-registered episode) -- docs/recordings.md, "Errors".
        if is_bag(args.path) and not (args.path / "manifest.json").is_file():
            recordings = [await asyncio.to_thread(_prepare_recording, args)]
        elif is_hdf5(args.path):
            recordings = list(await asyncio.to_thread(_prepare_hdf5, args))
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
        if recordings:
            # One report line per episode (a robomimic file holds several), in file order.
            codes = [await _upload_episode(client, r.manifest, r.batches, r) for r in recordings]
            return max(codes)
        manifest_path = args.path / "manifest.json"
        if not manifest_path.is_file():
            raise CaptureError(f"{manifest_path} not found: an episode directory needs one")
        manifest = manifest_path.read_text()
        batches = functools.partial(_directory_batches, args.path, manifest)
        return await _upload_episode(client, manifest, batches, None)


async def _upload_episode(
    client: CaptureClient,
    manifest: str,
    batches: Callable[[Mapping[str, int]], Iterator[tuple[str, pa.Table]]],
    recording: PreparedRecording | None,
) -> int:
    """Register (or find spooled), append every batch, complete; print the report line."""
    recorder = await client.open_episode(manifest)
    skip = {d.name: recorder.spooled_rows(d.name) for d in recorder.manifest.streams}
    for name, done in skip.items():
        if done:
            print(f"  {name}: {done} rows already spooled, continuing", file=sys.stderr)
    queued: dict[str, int] = {}
    rows = iter(batches(skip))
    # Conversion is CPU work: one batch at a time in a thread, so uploads keep moving.
    while (item := await asyncio.to_thread(next, rows, None)) is not None:
        name, table = item
        await recorder.append(name, table)
        queued[name] = queued.get(name, 0) + table.num_rows
    for decl in recorder.manifest.streams:
        print(f"  {decl.name}: {queued.get(decl.name, 0)} rows queued", file=sys.stderr)
    outcome = await recorder.close()
    summary: dict[str, Any] = {
        "episode_id": outcome.episode_id,
        "chunks": outcome.chunks,
        "rejected": outcome.rejected,
        "completed": outcome.completed,
    }
    if recording is not None:
        summary["recording"] = recording.report()
        for topic in summary["recording"].get("unmapped_topics", []):
            line = f"{topic['topic']} ({topic['ros_type']}, {topic['messages']} messages)"
            print(f"  not uploaded: {line}: {topic['reason']}", file=sys.stderr)
        for dataset in summary["recording"].get("unmapped_datasets", []):
            shape = "x".join(str(n) for n in dataset["shape"]) or "scalar"
            line = f"{dataset['dataset']} ({shape} {dataset['dtype']})"
            print(f"  not uploaded: {line}: {dataset['reason']}", file=sys.stderr)
    print(json.dumps(summary))
    return 0 if not outcome.rejected else 2


def _manifest_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The manifest fields from the flags (what a recording cannot know)."""
    fields: dict[str, Any] = {
        key: getattr(args, key)
        for key in ("device_id", "capture_point_id", "robot_type", "scene", "task", "operator")
    }
    fields["tags"] = args.tags
    if args.license or args.consent:
        rights = {"license": args.license, "consent": args.consent}
        if args.consent_reference:
            rights["consent_reference"] = args.consent_reference
        fields["rights"] = rights
    return fields


def _prepare_hdf5(args: argparse.Namespace) -> list[PreparedRecording]:
    from robolake.recordings import prepare_hdf5

    recordings = prepare_hdf5(
        args.path,
        fields=_manifest_fields(args),
        mapping=args.mapping,
        sidecar=args.sidecar,
        demo=args.demo,
        rate_hz=args.rate_hz,
        started_at=args.started_at,
        joint_names=args.joint_names,
    )
    for recording in recordings:
        recording.check_chunk_limit(args.max_chunk_bytes)
    return list(recordings)


def _prepare_recording(args: argparse.Namespace) -> PreparedRecording:
    from robolake.recordings import prepare

    recording = prepare(
        args.path, fields=_manifest_fields(args), mapping=args.mapping, sidecar=args.sidecar
    )
    recording.check_chunk_limit(args.max_chunk_bytes)
    return recording


def _directory_batches(
    folder: Path, manifest: str, skip: Mapping[str, int]
) -> Iterator[tuple[str, pa.Table]]:
    """An episode directory's streams, one ``<stream>.arrow``/``.parquet`` file each."""
    from robolake.episode.manifest import parse_manifest

    for decl in parse_manifest(manifest).streams:
        table = _read_stream(folder, decl.name)
        if table is None:
            print(f"  {decl.name}: no file, uploading no rows", file=sys.stderr)
            continue
        done = skip.get(decl.name, 0)
        if table.num_rows > done:
            yield decl.name, table.slice(done)


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
