"""``robolake demo``: the whole pipeline on the local stack, end to end, in a few minutes.

1. bring the stack up (Kafka, MinIO, Prometheus; installed on first use);
2. start a collector and a writer as real processes, scraped by Prometheus;
3. simulate 1,000 capture points uploading synthetic humanoid episodes for about a minute, and
   upload a real ROS 2 bag (``tests/fixtures/ros2/arm.mcap``, or ``--bag``) next to them;
4. wait until every acknowledged chunk is in the Parquet shards;
5. report what landed, run a DuckDB query over the shards, and say where to look.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robolake.dataset.audit import ChunkAudit, audit_chunks
from robolake.errors import RobolakeError
from robolake.launch import ServiceProcess, http_ok, robolake_argv, service_env, stop_all
from robolake.stack.paths import default_state_dir
from robolake.stack.process import free_port

#: The bag the demo uploads next to the synthetic episodes (a checkout has it; an installed
#: package does not, and then the demo says so and uploads only the synthetic ones).
DEMO_BAG = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "ros2" / "arm.mcap"
#: The demo bag's device, enrolled in the stack's registry like the simulated ones.
BAG_DEVICE = ("ros2-arm-rig", "cp-ros2-lab", "org-ros2")


class DemoError(RobolakeError):
    """A step of the demo failed; the message says which and where its log is."""


def add_parser(subparsers: Any) -> None:
    """Register ``robolake demo``."""
    parser = subparsers.add_parser(
        "demo",
        help="run the whole pipeline end to end on the local stack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--capture-points", type=int, default=1000, help="simulated capture points")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of uploads")
    parser.add_argument("--rate", type=float, default=20.0, help="target aggregate MB/s")
    parser.add_argument("--episode-seconds", type=float, default=4.0, help="length of an episode")
    parser.add_argument("--wait", type=float, default=240.0, help="max seconds to wait for shards")
    parser.add_argument("--state-dir", type=Path, default=None, help="stack state directory")
    parser.add_argument(
        "--bag", type=Path, default=DEMO_BAG,
        help="a ROS 2 bag (.mcap, .db3 or rosbag2 directory) to upload too (default: arm.mcap)",
    )  # fmt: skip
    parser.add_argument("--no-bag", action="store_true", help="upload no ROS 2 bag")
    parser.set_defaults(func=_run)


def _say(message: str) -> None:
    print(f"==> {message}", flush=True)


def _register_target(targets: Path, name: str, port: int) -> None:
    targets.mkdir(parents=True, exist_ok=True)
    document = [{"targets": [f"127.0.0.1:{port}"], "labels": {"service": name}}]
    (targets / f"{name}.json").write_text(json.dumps(document))


def _run(args: argparse.Namespace) -> int:
    from robolake.capture.simulator import SimulationConfig, simulate
    from robolake.endpoints import Endpoints
    from robolake.stack import prometheus
    from robolake.stack.stack import Stack

    began = time.monotonic()
    stack = Stack(args.state_dir or default_state_dir())
    _say("bringing the stack up (first run installs Kafka, MinIO, Prometheus)")
    stack.up(progress=lambda m: print(f"    {m}", flush=True))
    # The stack's own ticket key and device registry, so `robolake devices` and the collector
    # started here agree on who may upload.
    env = service_env(extra=stack.service_env())
    endpoints = Endpoints.from_env(env)
    run_dir = stack.state_dir / "demo"
    collector_port, writer_metrics = free_port(), free_port()
    argv = {
        "collector": ["collector", "--port", str(collector_port), "--device-rate", "0"],
        "writer": ["writer", "--metrics-port", str(writer_metrics), "--flush-age", "5",
                   "--group", "robolake-demo"],
    }  # fmt: skip
    services = [
        ServiceProcess.start(name, robolake_argv(*args), env=env, log_path=run_dir / f"{name}.log")
        for name, args in argv.items()
    ]
    collector, writer = services
    targets = prometheus.targets_dir(stack.state_dir / "prometheus")
    _register_target(targets, "collector", collector_port)
    _register_target(targets, "writer", writer_metrics)
    try:
        collector_url = f"http://127.0.0.1:{collector_port}"
        collector.wait_ready(http_ok(f"{collector_url}/readyz"))
        writer.wait_ready(http_ok(f"http://127.0.0.1:{writer_metrics}/metrics"))
        _say(f"collector at {collector_url}, writer metrics at :{writer_metrics}")
        _say(
            f"simulating {args.capture_points} capture points for {args.duration:.0f} s "
            f"at up to {args.rate:.0f} MB/s"
        )
        with tempfile.TemporaryDirectory(prefix="robolake-demo-") as tmp:
            config = SimulationConfig(
                collector_url=collector_url,
                devices_file=Path(env["ROBOLAKE_DEVICES_FILE"]),
                spool_dir=Path(tmp),
                capture_points=args.capture_points,
                duration_s=args.duration,
                rate_mb_s=args.rate,
                episode_seconds=args.episode_seconds,
            )
            result = asyncio.run(simulate(config, out=sys.stdout))
            print(result.render(), flush=True)
            bag = None
            if not args.no_bag and args.bag.exists():
                _say(f"uploading the ROS 2 bag {args.bag} as device {BAG_DEVICE[0]}")
                bag = asyncio.run(
                    _upload_bag(args.bag, collector_url, Path(env["ROBOLAKE_DEVICES_FILE"]),
                                Path(tmp) / "bag-spool")
                )  # fmt: skip
            elif not args.no_bag:
                _say(f"no ROS 2 bag at {args.bag}: uploading only the synthetic episodes")
        acknowledged = [(e, s, q) for e, s, q, _ in result.ledger]
        if bag is not None:
            acknowledged += bag.acknowledged
        _say(f"waiting until all {len(acknowledged)} acknowledged chunks are in the shards")
        deadline = time.monotonic() + args.wait
        while True:
            for service in services:
                service.check()
            audit = audit_chunks(endpoints, acknowledged)
            if audit.missing == 0 or time.monotonic() > deadline:
                break
            print(f"    {audit.found}/{audit.acknowledged} chunks in shards", flush=True)
            time.sleep(3)
        if audit.duplicated_rows:
            raise DemoError(
                f"{audit.duplicated_rows} rows are stored more than once; see {writer.log_path}"
            )
        if audit.missing:
            raise DemoError(
                f"{audit.missing} acknowledged chunks are not in the shards after "
                f"{args.wait:.0f} s; see {writer.log_path}"
            )
        _report(endpoints, result, audit, began, bag)
    finally:
        stop_all(services)
        for service in services:
            code = service.wait()
            if code != 0:
                print(f"    {service.name} exited with {code}; log: {service.log_path}")
        for name in ("collector", "writer"):
            (targets / f"{name}.json").unlink(missing_ok=True)
    return 0


@dataclass
class _Bag:
    """The demo's ROS 2 bag after its upload."""

    episode_id: str
    report: dict[str, Any]
    acknowledged: list[tuple[str, str, int]]


async def _upload_bag(bag: Path, collector_url: str, devices_file: Path, spool: Path) -> _Bag:
    """Convert and upload ``bag`` as ``robolake upload BAG`` does, keeping the acknowledged
    chunk keys for the audit. Run again on the same stack, it is the same episode, stored once."""
    import aiohttp

    from robolake.capture.client import CaptureClient
    from robolake.capture.spool import Spool
    from robolake.capture.uploader import Uploader, UploadStats
    from robolake.devices.registry import DeviceRegistry
    from robolake.recordings import prepare

    device, capture_point, _ = BAG_DEVICE
    token = DeviceRegistry(devices_file).add_many([BAG_DEVICE], replace=True)[device]
    fields = {
        "device_id": device,
        "capture_point_id": capture_point,
        "robot_type": "ur5e",
        "scene": "lab",
        "task": "pick up the red cup",
        "operator": "demo-operator",
    }
    recording = await asyncio.to_thread(prepare, bag, fields=fields)
    stats = UploadStats(ledger=[])
    async with aiohttp.ClientSession() as session:
        uploader = Uploader(session, collector_url, token, stats=stats, give_up_after=120)
        recorder = await CaptureClient(uploader, Spool(spool)).open_episode(recording.manifest)
        for stream, table in recording.batches():
            await recorder.append(stream, table)
        outcome = await recorder.close()
    if outcome.rejected or not outcome.completed:
        raise DemoError(f"the ROS 2 bag {bag} was not uploaded: {outcome}")
    keys = [(e, s, q) for e, s, q, _ in stats.ledger or []]
    return _Bag(outcome.episode_id, recording.report(), keys)


def _report_bag(endpoints: Any, bag: _Bag) -> None:
    from robolake.dataset.episodes import EpisodeFilter, read_index
    from robolake.dataset.reader import RobolakeDataset

    deadline = time.monotonic() + 60  # the index row follows the completion's flush
    wanted = EpisodeFilter(episode_ids=(bag.episode_id,))
    while read_index(endpoints, criteria=wanted).num_rows == 0:
        if time.monotonic() > deadline:
            raise DemoError(f"the ROS 2 bag's episode {bag.episode_id} is not in the index")
        time.sleep(2)
    info = RobolakeDataset(endpoints).episode(bag.episode_id)
    _say(f"the ROS 2 bag: episode {info.episode_id} (complete: {info.complete})")
    for stream in info.streams:
        topic = bag.report["streams"].get(stream.name, {}).get("topic", "")
        print(f"    {stream.name:<34} {stream.type:<12} {stream.rows:>6} rows   from {topic}")
    for unmapped in bag.report["unmapped_topics"]:
        line = f"{unmapped['topic']} ({unmapped['ros_type']}): {unmapped['reason']}"
        print(f"    not uploaded: {line}")


def _report(
    endpoints: Any, result: Any, audit: ChunkAudit, began: float, bag: _Bag | None = None
) -> None:
    import duckdb

    from robolake.dataset.storage import episodes_index, shards, uses_tables
    from robolake.lake.catalog import LakeTables
    from robolake.lake.status import render, status

    _say("what landed")
    print(
        f"    episodes uploaded   {result.episodes_completed} from "
        f"{result.active_capture_points} capture points"
    )
    print(
        f"    chunks in shards    {audit.found} of {audit.acknowledged} acknowledged; "
        f"rows stored twice: {audit.duplicated_rows}"
    )
    print(
        f"    shard files         {audit.shard_files}, {audit.shard_bytes / 1e9:.3f} GB on S3 "
        "(zstd Parquet, all runs on this stack)"
    )
    print(
        f"    upload throughput   {result.mb_per_s:.1f} MB/s acknowledged, "
        f"ack latency p50 {result.ack_p50_ms:.0f} ms / p99 {result.ack_p99_ms:.0f} ms"
    )
    if bag is not None:
        _report_bag(endpoints, bag)
    if uses_tables(endpoints):
        _say(
            f"Iceberg tables in namespace {endpoints.catalog_namespace} "
            f"(catalog {endpoints.catalog_uri}), from their current snapshots"
        )
        for line in render(status(LakeTables.from_endpoints(endpoints))).splitlines():
            print(f"    {line}")
    _say("an ML-ready query with DuckDB over the tables (joint states per scene)")
    joints = shards(endpoints, "joint_state.v1")  # noqa: F841 - read by DuckDB's replacement scan
    index = episodes_index(endpoints)  # noqa: F841
    query = """
        select i.scene, count(distinct j.episode_id) as episodes, count(*) as joint_rows,
               round(avg(list_avg(j.position)), 4) as mean_joint_position
        from joints j join (select distinct episode_id, scene from index) i using (episode_id)
        group by i.scene order by episodes desc
    """
    print(duckdb.sql(query))
    _say(f"done in {time.monotonic() - began:.0f} s; the stack keeps running")
    print(f"    Prometheus          {endpoints.prometheus_url}")
    print(f"    S3 (MinIO)          {endpoints.s3_endpoint}  bucket {endpoints.s3_bucket}")
    print(f"    Kafka               {endpoints.kafka_bootstrap}")
    print('    environment         eval "$(robolake stack status --env)"')
    print("    stop it             make stack-down")
