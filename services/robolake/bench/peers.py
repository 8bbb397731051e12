"""``python -m robolake.bench.peers`` (``make bench-peers``): robolake next to Benthos, one run.

Benthos v4.27.0 (MIT, Go) is what a platform team would put in front of Kafka instead of
robolake. The bench builds it once into the cache (``deploy/local/benthos``, a module of our own
whose main imports every component) and, on a private stack, measures both on the same Kafka,
the same MinIO, the same machine, with the same load generator:

- **HTTP -> Kafka**: 64 concurrent clients PUT the same ~1 MiB camera chunks, closed loop, for
  ``--seconds`` or until ``--budget-gb`` are acknowledged, to one robolake collector process and
  to Benthos ``http_server`` -> ``kafka_franz`` (acks=all, idempotent, no compression: the
  collector's settings). Every acknowledged chunk must be a record in the topic.
- **Kafka -> S3**: one pre-filled topic of humanoid episodes (``--drain-mb``) drained by
  Benthos ``kafka_franz`` -> ``aws_s3`` (tar archives near the shard size) and by one robolake
  writer (Parquet shards, Iceberg commits; ``bench/writer.py``'s drain), from the first record
  consumed to the last offset committed. Every record must be in Benthos's archives, and every
  chunk in robolake's shards, none twice.

Figures: MB/s (10^6 bytes of chunk payload), ack p50/p99 (HTTP), CPU seconds per GB (user +
system of the service process), peak RSS, stored/offered bytes (Kafka log segments or bucket
objects against the payload offered), and robolake/Benthos ratios. A mismatch in the accounting
fails the run. Topics and buckets are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from robolake.bench.collector import closed_loop
from robolake.bench.harness import (
    RSS_INTERVAL_S,
    Service,
    UploadTally,
    bench_devices,
    bench_env,
    drop_dataset,
    fresh_dataset,
    quantile,
)
from robolake.bench.writer import Prefill, prefill, writer_load
from robolake.collector.settings import PRODUCERS
from robolake.dataset.audit import ChunkAudit, audit_chunks
from robolake.endpoints import Endpoints
from robolake.episode.topics import MAX_RECORD_BYTES
from robolake.errors import RobolakeError
from robolake.launch import ServiceProcess, http_ok
from robolake.provision import TopicSpec, ensure_bucket, ensure_topics, s3_client
from robolake.stack.paths import cache_dir, default_state_dir, deploy_dir
from robolake.stack.process import cpu_seconds, free_port, rss_mib
from robolake.stack.stack import Stack

BENTHOS_VERSION: Final = "v4.27.0"
#: Go's linker refuses parquet-go's ``//go:linkname`` hash probe since Go 1.23 without it.
BENTHOS_LDFLAGS: Final = "-checklinkname=0"
CHUNK_BYTES: Final = 1024 * 1024
DEVICES: Final = 64
HTTP_PARTITIONS: Final = 8
DRAIN_PARTITIONS: Final = 4
#: Both drains flush a partial batch after this long (the writer's ``--flush-age``, Benthos's
#: batching ``period``); the tail of each drain waits about this much.
FLUSH_AGE_S: Final = 5.0
#: Benthos's archive size, the writer's flush size: the shard target.
SHARD_BYTES: Final = 128 * 1024 * 1024
DRAIN_DEADLINE_S: Final = 900.0
STOP_GRACE_S: Final = 60.0


class PeerBenchError(RobolakeError):
    """The peer bench could not run, or its accounting does not add up."""


def say(message: str) -> None:
    print(f"--> {message}", file=sys.stderr, flush=True)


# -- Benthos: build once, configure, run ---------------------------------------------------------


def benthos_binary() -> Path:
    """Where the Benthos build is cached."""
    return cache_dir() / "benthos" / BENTHOS_VERSION / "benthos"


def install_benthos(progress: Callable[[str], None] = say) -> Path:
    """Build Benthos once from ``deploy/local/benthos`` (``go build``; a cold build takes about
    7 minutes on 2 cores); later calls return the cached binary at once."""
    binary = benthos_binary()
    if binary.is_file():
        return binary
    go = shutil.which("go")
    if go is None:
        raise PeerBenchError("Go is not installed; it is needed once to build Benthos")
    module = deploy_dir() / "local" / "benthos"
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name("benthos.partial")
    progress(f"building Benthos {BENTHOS_VERSION} with go build (first run only, ~7 minutes)")
    result = subprocess.run(
        [go, "build", "-trimpath", f"-ldflags={BENTHOS_LDFLAGS}", "-o", str(partial), "."],
        cwd=module, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0 or not partial.is_file():
        raise PeerBenchError(
            f"go build of {module} failed (exit {result.returncode}):\n"
            f"{(result.stdout + result.stderr)[-4000:]}"
        )
    partial.rename(binary)
    return binary


def _common(metrics_port: int) -> dict[str, Any]:
    return {
        "http": {"address": f"127.0.0.1:{metrics_port}"},
        "logger": {"level": "WARN"},
        "metrics": {"prometheus": {}},
    }


def http_to_kafka_config(
    *, port: int, metrics_port: int, bootstrap: str, topic: str
) -> dict[str, Any]:
    """Benthos ``http_server`` -> ``kafka_franz``: each PUT answered once its record is
    acknowledged by every in-sync replica (franz-go's default: acks=all, idempotent), without
    compression (the collector's settings; camera chunks do not compress)."""
    return {
        **_common(metrics_port),
        "input": {
            "http_server": {
                "address": f"127.0.0.1:{port}",
                "path": "/v1/episodes/{episode}/streams/{stream}/chunks/{seq}",
                "allowed_verbs": ["PUT"],
                "timeout": "30s",
            }
        },
        "output": {
            "kafka_franz": {
                "seed_brokers": bootstrap.split(","),
                "topic": topic,
                "max_message_bytes": str(MAX_RECORD_BYTES),
                "compression": "none",
                "max_in_flight": DEVICES,
            }
        },
    }


def kafka_to_s3_config(
    *, metrics_port: int, bootstrap: str, topic: str, group: str, endpoints: Endpoints
) -> dict[str, Any]:
    """Benthos ``kafka_franz`` -> ``aws_s3``: tar archives of about :data:`SHARD_BYTES` (or what
    :data:`FLUSH_AGE_S` gathered), offsets committed once their archive is stored."""
    return {
        **_common(metrics_port),
        "input": {
            "kafka_franz": {
                "seed_brokers": bootstrap.split(","),
                "topics": [topic],
                "consumer_group": group,
                "start_from_oldest": True,
                "commit_period": "1s",
            }
        },
        "output": {
            "aws_s3": {
                "bucket": endpoints.s3_bucket,
                "path": "archives/${! uuid_v4() }.tar",
                "endpoint": endpoints.s3_endpoint,
                "region": endpoints.s3_region,
                "force_path_style_urls": True,
                "credentials": {
                    "id": endpoints.s3_access_key,
                    "secret": endpoints.s3_secret_key,
                },
                "max_in_flight": 2,
                "batching": {
                    "byte_size": SHARD_BYTES,
                    "period": f"{FLUSH_AGE_S:g}s",
                    "processors": [{"archive": {"format": "tar"}}],
                },
            }
        },
    }


@dataclass
class Benthos:
    """A Benthos process under measurement, with its peak RSS sampled like a robolake service."""

    service: Service
    metrics_port: int

    @classmethod
    def start(cls, binary: Path, config: dict[str, Any], workdir: Path, name: str) -> Benthos:
        path = workdir / f"{name}.json"  # JSON is YAML; it holds the S3 key: 0600
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(config, fh)
        process = ServiceProcess.start(
            name,
            [str(binary), "-c", str(path)],
            env=_benthos_env(),
            log_path=workdir / f"{name}.log",
        )
        port = int(config["http"]["address"].rsplit(":", 1)[1])
        return cls(Service(process), port)

    async def ready(self) -> None:
        await self.service.process.ready(http_ok(f"http://127.0.0.1:{self.metrics_port}/ready"))

    async def received(self, session: aiohttp.ClientSession) -> float:
        """Messages its input has read so far (its Prometheus ``input_received``)."""
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/metrics"
            async with session.get(url) as response:
                text = await response.text()
        except aiohttp.ClientError:
            return 0.0
        return sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("input_received")
        )


def _benthos_env() -> dict[str, str]:
    """Benthos gets no AWS_* or proxy variables of ours: only what its config says."""
    keep = ("PATH", "HOME", "TMPDIR", "LANG")
    return {k: v for k, v in os.environ.items() if k in keep}


# -- what the figures are ------------------------------------------------------------------------


@dataclass
class PathFigures:
    """One system on one path."""

    path: str  # "HTTP -> Kafka" or "Kafka -> S3"
    system: str  # "robolake" or "Benthos"
    mb_per_s: float
    offered_bytes: int
    seconds: float
    cpu_seconds: float
    peak_rss_mib: float
    stored_bytes: int
    records_offered: int
    records_stored: int
    ack_p50_ms: float | None = None
    ack_p99_ms: float | None = None
    errors: int = 0
    objects: int = 0
    median_object_mb: float | None = None

    @property
    def cpu_s_per_gb(self) -> float:
        return self.cpu_seconds / (self.offered_bytes / 1e9) if self.offered_bytes else 0.0

    @property
    def stored_ratio(self) -> float:
        return self.stored_bytes / self.offered_bytes if self.offered_bytes else 0.0


def check_http_accounting(
    system: str, *, acknowledged: int, refused: int, stored: int, overhead: int = 0
) -> None:
    """Every acknowledged chunk is a record in the topic: ``acknowledged <= stored - overhead``
    (``overhead``: records that are not chunks, robolake's manifests), and no record appeared
    that no request asked for (at most the ``refused`` ones, stored but answered late)."""
    chunks = stored - overhead
    if chunks < acknowledged:
        raise PeerBenchError(
            f"{system}: {acknowledged} chunks acknowledged but only {chunks} in Kafka "
            f"({acknowledged - chunks} lost)"
        )
    if chunks > acknowledged + refused:
        raise PeerBenchError(
            f"{system}: {chunks} chunk records in Kafka for {acknowledged} acknowledged and "
            f"{refused} refused requests"
        )


def check_drain_accounting(
    system: str, *, offered: int, stored: int, offered_bytes: int, stored_bytes: int
) -> None:
    """A drain stored exactly what the topic held: every record once, every byte."""
    if (stored, stored_bytes) != (offered, offered_bytes):
        raise PeerBenchError(
            f"{system}: the topic held {offered} records ({offered_bytes} bytes) but "
            f"{stored} records ({stored_bytes} bytes) were stored"
        )


def check_audit(audit: ChunkAudit, chunks: int) -> None:
    """robolake's shards hold every chunk of the topic, none twice."""
    if not audit.exact or audit.acknowledged != chunks:
        raise PeerBenchError(
            f"robolake writer: {chunks} chunks in the topic, {audit.found} in the shards "
            f"({audit.missing} missing, {audit.duplicated_rows} rows stored twice)"
        )


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or not theirs:
        return None
    return ours / theirs


COLUMNS: Final = (
    ("MB/s", "mb_per_s", ">"),
    ("ack p50 ms", "ack_p50_ms", "<"),
    ("ack p99 ms", "ack_p99_ms", "<"),
    ("CPU s/GB", "cpu_s_per_gb", "<"),
    ("peak RSS MiB", "peak_rss_mib", "<"),
    ("stored/offered", "stored_ratio", ""),
)


def robolake_system(producer: str, producers: tuple[str, ...]) -> str:
    """The table's name for the collector run with ``producer``: the first is "robolake"."""
    return "robolake" if producer == producers[0] else f"robolake ({producer})"


def table(figures: Iterable[PathFigures]) -> list[dict[str, Any]]:
    """Rows: per path, robolake (and its variants), Benthos, then robolake/Benthos of every
    column for each robolake row."""
    by_path: dict[str, dict[str, PathFigures]] = {}
    for figure in figures:
        by_path.setdefault(figure.path, {})[figure.system] = figure
    rows: list[dict[str, Any]] = []
    for path, systems in by_path.items():
        ours_names = [name for name in systems if name.startswith("robolake")]
        for system in (*ours_names, "Benthos"):
            if system in systems:
                f = systems[system]
                row: dict[str, Any] = {"path": path, "system": system}
                for label, attribute, _ in COLUMNS:
                    value = getattr(f, attribute)
                    row[label] = None if value is None else round(value, 3)
                row["records offered"] = f.records_offered
                row["records stored"] = f.records_stored
                rows.append(row)
        if "Benthos" not in systems:
            continue
        for name in ours_names:
            ours, theirs = systems[name], systems["Benthos"]
            ratio: dict[str, Any] = {"path": path, "system": f"{name}/Benthos"}
            for label, attribute, _ in COLUMNS:
                value = _ratio(getattr(ours, attribute), getattr(theirs, attribute))
                ratio[label] = None if value is None else round(value, 3)
            ratio["records offered"] = ratio["records stored"] = None
            rows.append(ratio)
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    """The table as text (Markdown, so the docs can take it as it is)."""
    header = [
        "path",
        "system",
        *(label for label, _, _ in COLUMNS),
        "records offered",
        "records stored",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = []
        for key in header:
            value = row[key]
            if value is None:
                cells.append("")
            elif key == "stored/offered":
                cells.append(f"{value:.3f}")
            elif isinstance(value, float):
                cells.append(
                    f"{value:.2f}" if "/" in row["system"] or value < 100 else f"{value:,.0f}"
                )
            elif isinstance(value, int):
                cells.append(f"{value:,}")
            else:
                cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- Kafka helpers -------------------------------------------------------------------------------


async def _end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[TopicPartition, int]:
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await probe.start()
    try:
        ends = await probe.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
    finally:
        await probe.stop()
    return dict(ends)


def kafka_log_bytes(kafka_data: Path, topic: str) -> int:
    """Bytes of a topic's log segments on the broker's disk (record batches with their headers)."""
    return sum(
        segment.stat().st_size
        for directory in kafka_data.glob(f"{topic}-*")
        for segment in directory.glob("*.log")
    )


async def _delete_topics(bootstrap: str, topics: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        with contextlib.suppress(KafkaError):
            await admin.delete_topics(topics)
    finally:
        await admin.close()


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (a collector with ``--workers`` is a master and its
    workers: the service's CPU and memory are theirs together)."""
    found: list[int] = []
    pending = [pid]
    while pending and len(found) < 1024:
        current = pending.pop()
        found.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError, ValueError):
                pending += [int(child) for child in children.read_text().split()]
    return found


def tree_cpu_seconds(pid: int) -> float:
    return sum(cpu_seconds(p) for p in process_tree(pid))


def _high_water_mib(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class TreeMemory:
    """The peak of a process tree's summed RSS, sampled like bench/harness.py's services."""

    pid: int
    peak_mib: float = 0.0

    async def sample(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.peak_mib = max(self.peak_mib, sum(rss_mib(p) for p in process_tree(self.pid)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RSS_INTERVAL_S)

    def peak(self) -> float:
        """The sampled peak, or one process's own high-water mark if higher (read while alive)."""
        return max(self.peak_mib, _high_water_mib(self.pid))


# -- HTTP -> Kafka -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    seconds: float = 30.0
    budget_bytes: int = 4_000_000_000
    drain_bytes: int = 2_000_000_000
    devices: int = DEVICES
    #: A folder: the robolake collector and writer are sampled by py-spy into collector.svg /
    #: .txt and writer.svg / .txt there (Benthos is not). Their figures then carry the
    #: samplers' load on the same cores: the profile's run is not the table's.
    profile: str | None = None
    #: The collector's Kafka clients to measure, each a row (``--producers``); the first is the
    #: table's "robolake", the others "robolake (<client>)".
    producers: tuple[str, ...] = ("librdkafka",)

    @property
    def profile_dir(self) -> Path | None:
        return None if self.profile is None else Path(self.profile)


async def _http_run(
    system: str,
    service: Service,
    base: str,
    tokens: list[str],
    plan: Plan,
    *,
    register: bool,
    accepted: tuple[int, ...],
) -> tuple[float, float, float, UploadTally]:
    """The closed loop against ``base``: (CPU seconds of the service's processes meanwhile, their
    peak RSS, the seconds, the tally)."""
    memory = TreeMemory(service.process.pid)
    stop = asyncio.Event()
    sampler = asyncio.create_task(memory.sample(stop))
    cpu_before = tree_cpu_seconds(service.process.pid)
    try:
        tally, elapsed = await closed_loop(
            base,
            tokens,
            seconds=plan.seconds,
            chunk_bytes=CHUNK_BYTES,
            register=register,
            accepted=accepted,
            budget=plan.budget_bytes,
        )
        service.process.check()
        cpu = tree_cpu_seconds(service.process.pid) - cpu_before
        peak = memory.peak()
    finally:
        stop.set()
        await sampler
    say(f"{system}: {tally.sent / 1e6:,.0f} MB acknowledged in {elapsed:.1f} s")
    return cpu, peak, elapsed, tally


def _http_figures(
    system: str,
    tally: UploadTally,
    elapsed: float,
    cpu: float,
    rss: float,
    stored: int,
    records: int,
) -> PathFigures:
    latencies = sorted(tally.latencies)
    return PathFigures(
        path="HTTP -> Kafka",
        system=system,
        mb_per_s=tally.sent / 1e6 / elapsed,
        offered_bytes=tally.sent,
        seconds=elapsed,
        cpu_seconds=cpu,
        peak_rss_mib=rss,
        stored_bytes=stored,
        records_offered=len(latencies),
        records_stored=records,
        ack_p50_ms=quantile(latencies, 0.5) * 1000,
        ack_p99_ms=quantile(latencies, 0.99) * 1000,
        errors=tally.errors,
    )


async def http_paths(
    endpoints: Endpoints, workdir: Path, kafka_data: Path, binary: Path, plan: Plan
) -> list[PathFigures]:
    """The same closed loop against one robolake collector and against Benthos."""
    devices_file, by_device = bench_devices(workdir / "peers-devices.json", plan.devices)
    tokens = list(by_device.values())
    bootstrap = endpoints.kafka_bootstrap
    spec = {"max.message.bytes": str(MAX_RECORD_BYTES)}
    figures = []

    for producer in plan.producers:
        system = robolake_system(producer, plan.producers)
        topic = f"bench-peers-collector-{uuid.uuid4().hex[:8]}"
        await ensure_topics(bootstrap, [TopicSpec(topic, HTTP_PARTITIONS, spec)])
        port = free_port()
        say(
            f"robolake collector (1 process, uvloop, {producer}): {plan.devices} clients, "
            f"{plan.seconds:g} s"
        )
        collector = Service.start(
            ["collector", "--port", str(port), "--device-rate", "0", "--event-loop", "uvloop",
             "--producer", producer],
            # One process: the collector's workers default to the cores where --workers exists.
            {**bench_env(endpoints, topic, devices_file), "ROBOLAKE_COLLECTOR_WORKERS": "1"},
            workdir / f"peers-collector-{producer}.log",
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            await collector.ready(f"{base}/readyz")
            if plan.profile_dir is not None and system == "robolake":
                # From the load on: start-up is not the profile's.
                collector.process.profile(plan.profile_dir / "collector")
            cpu, rss, elapsed, tally = await _http_run(
                system, collector, base, tokens, plan, register=True, accepted=(201,)
            )
            await collector.stop()
            records = sum((await _end_offsets(bootstrap, topic, HTTP_PARTITIONS)).values())
            # Each device registered one episode: one manifest record each, besides its chunks.
            check_http_accounting(
                f"robolake collector ({producer})",
                acknowledged=len(tally.latencies),
                refused=tally.errors,
                stored=records,
                overhead=plan.devices,
            )
            stored = kafka_log_bytes(kafka_data, topic)
            figures.append(
                _http_figures(system, tally, elapsed, cpu, rss, stored, records - plan.devices)
            )
        finally:
            await collector.stop()
            await _delete_topics(bootstrap, [topic])

    topic = f"bench-peers-benthos-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [TopicSpec(topic, HTTP_PARTITIONS, spec)])
    port = free_port()
    config = http_to_kafka_config(
        port=port, metrics_port=free_port(), bootstrap=bootstrap, topic=topic
    )
    say(f"Benthos http_server -> kafka_franz: {plan.devices} clients, {plan.seconds:g} s")
    benthos = Benthos.start(binary, config, workdir, "benthos-http")
    try:
        await benthos.ready()
        cpu, rss, elapsed, tally = await _http_run(
            "Benthos",
            benthos.service,
            f"http://127.0.0.1:{port}",
            tokens,
            plan,
            register=False,
            accepted=(200, 201, 204),
        )
        await benthos.service.stop()
        records = sum((await _end_offsets(bootstrap, topic, HTTP_PARTITIONS)).values())
        check_http_accounting(
            "Benthos http_server",
            acknowledged=len(tally.latencies),
            refused=tally.errors,
            stored=records,
        )
        stored = kafka_log_bytes(kafka_data, topic)
        figures.append(_http_figures("Benthos", tally, elapsed, cpu, rss, stored, records))
    finally:
        await benthos.service.stop()
        await _delete_topics(bootstrap, [topic])
    return figures


# -- Kafka -> S3 ---------------------------------------------------------------------------------


def archive_totals(endpoints: Endpoints) -> tuple[int, int, list[int]]:
    """(messages, message bytes, object sizes) of every tar archive in the bucket."""
    client = s3_client(endpoints)
    messages = payload = 0
    sizes = []
    for item in client.list_objects(endpoints.s3_bucket, recursive=True):
        sizes.append(int(item.size or 0))
        response = client.get_object(endpoints.s3_bucket, str(item.object_name))
        try:
            with tarfile.open(fileobj=response, mode="r|") as archive:
                for member in archive:
                    messages += 1
                    payload += member.size
        finally:
            response.close()
            response.release_conn()
    return messages, payload, sizes


def bucket_totals(endpoints: Endpoints) -> tuple[int, list[int]]:
    """(bytes, object sizes) of everything in the dataset's bucket."""
    client = s3_client(endpoints)
    sizes = [int(o.size or 0) for o in client.list_objects(endpoints.s3_bucket, recursive=True)]
    return sum(sizes), sizes


async def coordinator_ready(bootstrap: str, *, within: float = 60.0) -> None:
    """Wait until the broker has a group coordinator: the first consumer group on a fresh broker
    gets GroupCoordinatorNotAvailable while ``__consumer_offsets`` is being created, and
    bench/writer.py's drain does not ask twice."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    deadline = time.monotonic() + within
    try:
        while True:
            try:
                await admin.list_consumer_group_offsets("bench-peers-warm-up")
                return
            except KafkaError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1.0)
    finally:
        await admin.close()


async def _committed(
    admin: AIOKafkaAdminClient, group: str, topic: str
) -> dict[TopicPartition, int]:
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    except KafkaError:  # GroupCoordinatorNotAvailable on a fresh broker: ask again
        return {}
    return {tp: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


async def benthos_drain(
    endpoints: Endpoints, workdir: Path, binary: Path, filled: Prefill
) -> PathFigures:
    """Benthos drains the topic into tar archives until its group committed every offset."""
    bootstrap = endpoints.kafka_bootstrap
    ends = await _end_offsets(bootstrap, filled.topic, DRAIN_PARTITIONS)
    dataset = fresh_dataset(endpoints, "peers-benthos")
    ensure_bucket(dataset)
    group = f"bench-peers-{filled.topic}"
    config = kafka_to_s3_config(
        metrics_port=free_port(),
        bootstrap=bootstrap,
        topic=filled.topic,
        group=group,
        endpoints=dataset,
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    benthos = Benthos.start(binary, config, workdir, "benthos-s3")
    memory = TreeMemory(benthos.service.process.pid)
    stop = asyncio.Event()
    sampler = asyncio.create_task(memory.sample(stop))
    try:
        began = time.monotonic()
        first: float | None = None
        cpu_first = 0.0
        async with aiohttp.ClientSession() as session:
            while True:
                benthos.service.process.check()
                if time.monotonic() - began > DRAIN_DEADLINE_S:
                    raise PeerBenchError(
                        f"Benthos did not drain {filled.topic} in {DRAIN_DEADLINE_S:.0f} s"
                    )
                if first is None and await benthos.received(session) > 0:
                    first = time.monotonic()
                    cpu_first = tree_cpu_seconds(benthos.service.process.pid)
                committed = await _committed(admin, group, filled.topic)
                if all(committed.get(tp, 0) >= end for tp, end in ends.items()):
                    break
                await asyncio.sleep(0.1)
        done = time.monotonic()
        cpu = tree_cpu_seconds(benthos.service.process.pid) - cpu_first
        rss = memory.peak()
        stop.set()
        await benthos.service.stop()
        messages, payload, sizes = await asyncio.to_thread(archive_totals, dataset)
        check_drain_accounting(
            "Benthos kafka_franz -> aws_s3",
            offered=filled.records,
            stored=messages,
            offered_bytes=filled.value_bytes,
            stored_bytes=payload,
        )
    finally:
        stop.set()
        await sampler
        await benthos.service.stop()
        await admin.close()
        await asyncio.to_thread(drop_dataset, dataset)
    start = first if first is not None else began
    return PathFigures(
        path="Kafka -> S3",
        system="Benthos",
        mb_per_s=filled.chunk_bytes / 1e6 / (done - start),
        offered_bytes=filled.chunk_bytes,
        seconds=done - start,
        cpu_seconds=cpu,
        peak_rss_mib=rss,
        stored_bytes=sum(sizes),
        records_offered=filled.records,
        records_stored=messages,
        objects=len(sizes),
        median_object_mb=statistics.median(sizes) / 1e6 if sizes else None,
    )


async def robolake_drain(
    endpoints: Endpoints, workdir: Path, filled: Prefill, profile: Path | None = None
) -> PathFigures:
    """One robolake writer drains the same topic (bench/writer.py), then the shards are audited;
    ``profile``: a folder for its py-spy profile (writer.svg, writer.txt)."""
    found: dict[str, Any] = {}

    def inspect(dataset: Endpoints) -> None:
        found["audit"] = audit_chunks(dataset, filled.keys)
        found["bytes"], found["sizes"] = bucket_totals(dataset)

    writer = await writer_load(
        endpoints,
        workdir,
        megabytes=0,
        chunk_bytes=CHUNK_BYTES,
        flush_mib=SHARD_BYTES >> 20,
        flush_age_s=FLUSH_AGE_S,
        prefilled=(filled.topic, DRAIN_PARTITIONS, filled.chunk_bytes),
        inspect=inspect,
        profile=profile,
    )
    audit: ChunkAudit = found["audit"]
    check_audit(audit, len(filled.keys))
    shards = [s for s in found["sizes"] if s >= 1_000_000]  # data files, not metadata
    return PathFigures(
        path="Kafka -> S3",
        system="robolake",
        mb_per_s=writer.mb_per_s,
        offered_bytes=filled.chunk_bytes,
        seconds=writer.seconds,
        cpu_seconds=writer.cpu_ms_per_mb * filled.chunk_bytes / 1e9,
        peak_rss_mib=writer.peak_rss_mib,
        stored_bytes=found["bytes"],
        records_offered=len(filled.keys),
        records_stored=audit.found,
        objects=len(found["sizes"]),
        median_object_mb=statistics.median(shards) / 1e6 if shards else None,
    )


async def drain_paths(
    endpoints: Endpoints, workdir: Path, binary: Path, plan: Plan
) -> list[PathFigures]:
    """One pre-filled topic, drained by Benthos and by the robolake writer in turn."""
    topic = f"bench-peers-drain-{uuid.uuid4().hex[:8]}"
    await ensure_topics(
        endpoints.kafka_bootstrap,
        [TopicSpec(topic, DRAIN_PARTITIONS, {"max.message.bytes": str(MAX_RECORD_BYTES)})],
    )
    try:
        await coordinator_ready(endpoints.kafka_bootstrap)
        say(f"filling {topic} with {plan.drain_bytes / 1e6:,.0f} MB of humanoid episodes")
        filled = await prefill(endpoints, topic, plan.drain_bytes, CHUNK_BYTES)
        say("Benthos kafka_franz -> aws_s3 (tar archives) draining it")
        benthos = await benthos_drain(endpoints, workdir, binary, filled)
        say("robolake writer (Parquet shards, Iceberg commits) draining it")
        robolake = await robolake_drain(endpoints, workdir, filled, plan.profile_dir)
    finally:
        await _delete_topics(endpoints.kafka_bootstrap, [topic])
    return [robolake, benthos]


async def measure(
    endpoints: Endpoints, workdir: Path, kafka_data: Path, binary: Path, plan: Plan
) -> dict[str, Any]:
    figures = await http_paths(endpoints, workdir, kafka_data, binary, plan)
    figures += await drain_paths(endpoints, workdir, binary, plan)
    return {
        "benthos": BENTHOS_VERSION,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "plan": asdict(plan),
        "table": table(figures),
        "raw": [
            {**asdict(f), "cpu_s_per_gb": f.cpu_s_per_gb, "stored_ratio": f.stored_ratio}
            for f in figures
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m robolake.bench.peers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("docs/performance/peers.json"))
    parser.add_argument("--seconds", type=float, default=Plan.seconds, help="HTTP load length")
    parser.add_argument(
        "--budget-gb", type=float, default=Plan.budget_bytes / 1e9, help="HTTP bytes per system"
    )
    parser.add_argument(
        "--drain-mb", type=int, default=Plan.drain_bytes // 1_000_000, help="topic to drain"
    )
    parser.add_argument("--devices", type=int, default=DEVICES, help="concurrent clients")
    parser.add_argument("--state-dir", type=Path, default=None, help="stack state directory")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="sample the robolake collector and writer with py-spy into DIR/{collector,writer}"
        ".{svg,txt} (flame graph, collapsed stacks)",
    )
    parser.add_argument(
        "--producers",
        default=",".join(Plan.producers),
        help="the collector's Kafka clients to measure, comma-separated, first = the table's "
        "robolake row (e.g. librdkafka,aiokafka for before/after; default %(default)s)",
    )
    args = parser.parse_args(argv)
    producers = tuple(name.strip() for name in args.producers.split(",") if name.strip())
    if not producers or not set(producers) <= set(PRODUCERS):
        parser.error(f"--producers: expected names among {', '.join(PRODUCERS)}")
    plan = Plan(
        producers=producers,
        seconds=args.seconds,
        budget_bytes=int(args.budget_gb * 1e9),
        drain_bytes=args.drain_mb * 1_000_000,
        devices=args.devices,
        profile=None if args.profile is None else str(args.profile.resolve()),
    )
    binary = install_benthos()
    state = args.state_dir or default_state_dir().with_name("peers-stack")
    stack = Stack(state)
    began = time.monotonic()
    say(f"peers stack in {state}")
    endpoints = stack.up(progress=say)
    try:
        with tempfile.TemporaryDirectory(prefix="robolake-peers-") as tmp:
            report = asyncio.run(
                measure(endpoints, Path(tmp), state / "kafka" / "data", binary, plan)
            )
    finally:
        stack.down(progress=say)
        if args.state_dir is None:
            shutil.rmtree(state, ignore_errors=True)  # gigabytes of topics nobody reads again
    report["seconds"] = round(time.monotonic() - began, 1)
    report["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(render(report["table"]))
    print(f"\n({report['seconds']:.0f} s; figures in {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
