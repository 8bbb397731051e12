"""robolake's own figures: collector, writer and end to end, on the local stack.

- collector: acknowledged payload MB/s and ack latency under a closed loop of concurrent device
  uploads of pre-encoded chunks (the load generator does no encoding, so it costs little CPU);
- writer: MB/s draining a pre-filled topic into Parquet shards on MinIO (start to last commit);
- end to end: the simulator's capture points at a steady rate, ack latency p99;
- peak RSS of the collector and writer processes during each run.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import random
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from robolake.devices.registry import DeviceRegistry
from robolake.endpoints import Endpoints
from robolake.episode.checksums import checksum
from robolake.episode.ids import new_episode_id
from robolake.episode.records import chunk_record, complete_record, manifest_record
from robolake.episode.synthetic import SyntheticEpisode, SyntheticSpec, generate_episode
from robolake.episode.topics import MAX_RECORD_BYTES
from robolake.provision import TopicSpec, ensure_topics
from robolake.stack.process import free_port, rss_mib

TICKET_KEY = "bench-ticket-key-0123456789abcdef"


@dataclass
class Service:
    """A robolake service subprocess whose peak RSS is sampled."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    peak_rss_mib: float = 0.0
    _sampler: asyncio.Task[None] | None = field(default=None, repr=False)

    @classmethod
    def start(
        cls, argv: list[str], env: dict[str, str], log_path: Path, *, nice: int = 0
    ) -> Service:
        """``robolake ARGV`` as a subprocess, at scheduling priority ``nice`` (``nice(1)``)."""
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                ["nice", "-n", str(nice), sys.executable, "-m", "robolake", *argv]
                if nice
                else [sys.executable, "-m", "robolake", *argv],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return cls(proc, log_path)

    async def sample(self) -> None:
        while self.proc.poll() is None:
            self.peak_rss_mib = max(self.peak_rss_mib, rss_mib(self.proc.pid))
            await asyncio.sleep(0.2)

    def watch(self) -> None:
        self._sampler = asyncio.create_task(self.sample())

    async def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        await asyncio.to_thread(self.proc.wait, 90)
        if self._sampler is not None:
            self._sampler.cancel()

    async def ready(self, url: str) -> None:
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(self.log_path.read_text()[-3000:])
                try:
                    async with session.get(url) as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"not ready: {url}")


def service_env(endpoints: Endpoints, topic: str, devices: Path) -> dict[str, str]:
    """The environment of a bench service: the stack, the ticket key, devices, the topic."""
    return {
        **os.environ,
        **endpoints.to_env(),
        "ROBOLAKE_TICKET_KEY": TICKET_KEY,
        "ROBOLAKE_DEVICES_FILE": str(devices),
        "ROBOLAKE_CHUNK_TOPIC": topic,
    }


def bench_episode(seed: int, seconds: float = 10.0) -> SyntheticEpisode:
    """The humanoid of the contract: 29 joints, IMU, 3 cameras of 640x480 JPEG at 30 Hz."""
    return generate_episode(
        SyntheticSpec(
            seed=seed,
            frame_seed=1,
            duration_s=seconds,
            device_id="bench-dev-000",
            capture_point_id="bench-cp",
        )
    )


@dataclass
class CollectorFigures:
    mb_per_s: float
    chunks: int
    ack_p50_ms: float
    ack_p99_ms: float
    peak_rss_mib: float
    errors: int


@dataclass
class UploadTally:
    """What device upload loops saw: acknowledged payload bytes, ack latencies (s), refusals."""

    sent: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)

    def figures(self, elapsed: float, peak_rss_mib: float) -> CollectorFigures:
        """MB/s over ``elapsed`` seconds, ack latency quantiles, refusals."""
        latencies = sorted(self.latencies)
        return CollectorFigures(
            mb_per_s=self.sent / 1e6 / elapsed,
            chunks=len(latencies),
            ack_p50_ms=_quantile(latencies, 0.5) * 1000,
            ack_p99_ms=_quantile(latencies, 0.99) * 1000,
            peak_rss_mib=peak_rss_mib,
            errors=self.errors,
        )


def chunk_headers(token: str, ticket: str, digest: str) -> dict[str, str]:
    """The headers of a chunk PUT (schemas/collector.openapi.json)."""
    return {
        "Authorization": f"Bearer {token}",
        "Upload-Ticket": ticket,
        "Robolake-Checksum": digest,
        "Content-Type": "application/vnd.apache.arrow.stream",
    }


async def device_uploads(
    session: aiohttp.ClientSession,
    base: str,
    index: int,
    token: str,
    *,
    chunk_bytes: int,
    deadline: float,
    tally: UploadTally,
) -> None:
    """One device's closed loop against the collector at ``base``: register a synthetic episode
    (device ``bench-dev-{index:03d}``), then PUT its pre-encoded camera chunks back to back until
    ``deadline`` (``time.monotonic()``), counting into ``tally``."""
    episode = generate_episode(
        SyntheticSpec(
            seed=index,
            frame_seed=1,
            duration_s=4.0,
            device_id=f"bench-dev-{index:03d}",
            capture_point_id="bench-cp",
            pose_rate_hz=None,
        )
    )
    chunks = [c for c in episode.iter_chunks(chunk_bytes) if c[0].startswith("cam_")]
    prepared = [(s, d, checksum(d)) for s, _, d in chunks]
    auth = {"Authorization": f"Bearer {token}"}
    async with session.post(
        f"{base}/v1/episodes",
        data=episode.manifest_bytes(),
        headers={**auth, "Content-Type": "application/json"},
    ) as r:
        ticket = (await r.json())["ticket"]
    episode_url = f"{base}/v1/episodes/{episode.manifest.episode_id}"
    seq = 0
    while time.monotonic() < deadline:
        stream, data, digest = prepared[seq % len(prepared)]
        url = f"{episode_url}/streams/{stream}/chunks/{seq}"
        began = time.perf_counter()
        async with session.put(
            url,
            data=io.BytesIO(data),
            expect100=True,
            headers=chunk_headers(token, ticket, digest),
        ) as r:
            await r.read()
            if r.status == 201:
                tally.latencies.append(time.perf_counter() - began)
                tally.sent += len(data)
            else:
                tally.errors += 1
                await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
        seq += 1


async def collector_load(
    endpoints: Endpoints,
    workdir: Path,
    *,
    devices: int,
    seconds: float,
    chunk_bytes: int,
    event_loop: str = "asyncio",
) -> CollectorFigures:
    """Closed-loop uploads by ``devices`` concurrent devices for ``seconds``."""
    topic = f"bench-collector-{uuid.uuid4().hex[:8]}"
    await ensure_topics(
        endpoints.kafka_bootstrap,
        [TopicSpec(topic, 8, {"max.message.bytes": str(MAX_RECORD_BYTES)})],
    )
    devices_file, tokens = bench_devices(workdir / "collector-devices.json", devices)
    port = free_port()
    service = Service.start(
        ["collector", "--port", str(port), "--device-rate", "0", "--event-loop", event_loop],
        service_env(endpoints, topic, devices_file),
        workdir / f"collector-{event_loop}.log",
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await service.ready(f"{base}/readyz")
        service.watch()
        tally, elapsed = await closed_loop(
            base, list(tokens.values()), seconds=seconds, chunk_bytes=chunk_bytes
        )
    finally:
        await service.stop()
    return tally.figures(elapsed, service.peak_rss_mib)


def bench_devices(path: Path, count: int) -> tuple[Path, dict[str, str]]:
    """A device registry at ``path`` with ``bench-dev-000``...: its path, and each device's
    token in device order."""
    registry = DeviceRegistry(path)
    ids = [f"bench-dev-{i:03d}" for i in range(count)]
    tokens = registry.add_many([(d, "bench-cp", "bench-org") for d in ids], replace=True)
    return registry.path, {d: tokens[d] for d in ids}


async def closed_loop(
    base: str, tokens: list[str], *, seconds: float, chunk_bytes: int
) -> tuple[UploadTally, float]:
    """One :func:`device_uploads` loop per token against ``base`` for ``seconds``; the tally and
    the seconds from start to the last answer."""
    tally = UploadTally()
    connector = aiohttp.TCPConnector(limit=len(tokens))
    async with aiohttp.ClientSession(connector=connector) as session:
        began = time.monotonic()
        deadline = began + seconds
        await asyncio.gather(
            *(
                device_uploads(
                    session,
                    base,
                    i,
                    token,
                    chunk_bytes=chunk_bytes,
                    deadline=deadline,
                    tally=tally,
                )
                for i, token in enumerate(tokens)
            )
        )
        return tally, time.monotonic() - began


@dataclass
class WriterFigures:
    """A drain of a pre-filled topic: steady MB/s from the first record consumed to the last
    commit, and separately the start-up (process start, group join, recovery)."""

    mb_per_s: float
    megabytes: float
    seconds: float
    startup_s: float
    prefill_mb_per_s: float
    peak_rss_mib: float
    buffer_cap_mib: float
    flush_mib: float


async def _prefill(endpoints: Endpoints, topic: str, target_bytes: int, chunk_bytes: int) -> int:
    """Produce humanoid episodes (manifest, chunks, completion) until ``target_bytes`` of chunks.

    Generating the episodes is part of the fill, which is timed apart from the drain.
    """
    producer = AIOKafkaProducer(
        bootstrap_servers=endpoints.kafka_bootstrap,
        acks="all",
        enable_idempotence=True,
        max_request_size=MAX_RECORD_BYTES,
        linger_ms=5,
        max_batch_size=1024 * 1024,
    )
    await producer.start()
    total = 0
    try:
        seed = 0
        while total < target_bytes:
            episode = bench_episode(1000 + seed)
            manifest = episode.manifest_bytes()
            meta = manifest_record(episode.manifest, manifest)
            await producer.send(topic, manifest, key=meta.key, headers=meta.headers())
            chunks = episode.chunks(chunk_bytes)
            for stream, encoded in chunks.items():
                for seq, data in enumerate(encoded):
                    meta = chunk_record(episode.manifest, stream, seq, data)
                    await producer.send(topic, data, key=meta.key, headers=meta.headers())
                    total += len(data)
            done = str(episode.completion_document(chunks)).replace("'", '"').encode()
            meta = complete_record(episode.manifest, done)
            await producer.send(topic, done, key=meta.key, headers=meta.headers())
            seed += 1
        await producer.flush()
    finally:
        await producer.stop()
    return total


async def _metric(session: aiohttp.ClientSession, url: str, name: str) -> float:
    """One unlabelled sample from a Prometheus text page (0 when absent or unreachable)."""
    try:
        async with session.get(url) as response:
            text = await response.text()
    except aiohttp.ClientError:
        return 0.0
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


async def writer_load(
    endpoints: Endpoints,
    workdir: Path,
    *,
    megabytes: int,
    chunk_bytes: int,
    buffer_mib: int = 512,
    flush_mib: int = 128,
    flush_age_s: float = 2.0,
) -> WriterFigures:
    """Fill a topic, then run a writer until it has committed every record.

    Throughput counts from the first record consumed (the writer's own counter) to the last
    commit: joining the group is a one-time cost, reported apart. The tail of the drain waits
    ``flush_age_s`` (the topic has gone quiet, so the last buffers flush by age).
    """
    topic = f"bench-writer-{uuid.uuid4().hex[:8]}"
    await ensure_topics(
        endpoints.kafka_bootstrap,
        [TopicSpec(topic, 4, {"max.message.bytes": str(MAX_RECORD_BYTES)})],
    )
    filling = time.monotonic()
    total = await _prefill(endpoints, topic, megabytes * 1_000_000, chunk_bytes)
    prefill_rate = total / 1e6 / (time.monotonic() - filling)
    admin = AIOKafkaAdminClient(bootstrap_servers=endpoints.kafka_bootstrap)
    await admin.start()
    from aiokafka import AIOKafkaConsumer

    probe = AIOKafkaConsumer(bootstrap_servers=endpoints.kafka_bootstrap)
    await probe.start()
    partitions = [TopicPartition(topic, p) for p in range(4)]
    ends = await probe.end_offsets(partitions)
    await probe.stop()
    group = f"bench-{topic}"
    bucket_endpoints = replace(endpoints, s3_bucket=f"bench-{uuid.uuid4().hex[:10]}")
    from robolake.provision import ensure_bucket

    ensure_bucket(bucket_endpoints)
    port = free_port()
    service = Service.start(
        [
            "writer",
            "--metrics-port",
            str(port),
            "--group",
            group,
            "--flush-age",
            str(flush_age_s),
            "--flush-bytes",
            f"{flush_mib}MiB",
            "--max-buffer-bytes",
            f"{buffer_mib}MiB",
        ],
        service_env(bucket_endpoints, topic, workdir / "none.json"),
        workdir / "writer.log",
    )
    began = time.monotonic()
    first_record: float | None = None
    service.watch()
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    try:
        async with aiohttp.ClientSession() as session:
            deadline = began + 900
            while time.monotonic() < deadline:
                if first_record is None and await _metric(
                    session, metrics_url, "robolake_writer_consumed_bytes_total"
                ):
                    first_record = time.monotonic()
                offsets = await admin.list_consumer_group_offsets(group)
                committed = {tp: meta.offset for tp, meta in offsets.items() if tp.topic == topic}
                if all(committed.get(tp, 0) >= ends[tp] for tp in partitions):
                    break
                if service.proc.poll() is not None:
                    raise RuntimeError(service.log_path.read_text()[-3000:])
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError(f"writer did not drain {topic} in 900 s")
        done = time.monotonic()
    finally:
        await admin.close()
        await service.stop()
    start = first_record if first_record is not None else began
    return WriterFigures(
        mb_per_s=total / 1e6 / (done - start),
        megabytes=total / 1e6,
        seconds=done - start,
        startup_s=start - began,
        prefill_mb_per_s=prefill_rate,
        peak_rss_mib=service.peak_rss_mib,
        buffer_cap_mib=buffer_mib,
        flush_mib=flush_mib,
    )


@dataclass
class EndToEndFigures:
    capture_points: int
    target_mb_per_s: float
    mb_per_s: float
    chunks: int
    ack_p50_ms: float
    ack_p99_ms: float
    #: How late the load generator started uploads against their schedule (p99, ms): large
    #: values mean the generator, not robolake, limited the offered load.
    start_lag_p99_ms: float
    collector_rss_mib: float
    writer_rss_mib: float
    writer_buffer_cap_mib: float
    errors: dict[str, int]


@dataclass
class _Template:
    """One pre-encoded humanoid episode every capture point replays under its own identity."""

    document: dict[str, Any]
    chunks: list[tuple[str, int, bytes, str]]  # stream, seq, bytes, checksum header

    @classmethod
    def build(cls, chunk_bytes: int) -> _Template:
        episode = bench_episode(7)
        chunks = [(s, q, d, checksum(d)) for s, q, d in episode.iter_chunks(chunk_bytes)]
        # Streams interleaved (by seq), roughly as a recording device uploads them.
        chunks.sort(key=lambda c: (c[1], c[0]))
        return cls(json.loads(episode.manifest_bytes()), chunks)

    def manifest(self, device_id: str, capture_point_id: str) -> tuple[str, bytes]:
        document = {
            **self.document,
            "episode_id": new_episode_id(device_id),
            "device_id": device_id,
            "capture_point_id": capture_point_id,
        }
        return document["episode_id"], json.dumps(document).encode()


async def _paced_capture_point(
    session: aiohttp.ClientSession,
    base: str,
    token: str,
    device_id: str,
    template: _Template,
    *,
    bytes_per_s: float,
    ready: asyncio.Event,
    arrived: list[str],
    window: list[float],
    tally: UploadTally,
    lags: list[float],
    errors: dict[str, int],
) -> None:
    """One capture point's open loop: episodes of the template, each chunk PUT when the
    recording would have produced it at ``bytes_per_s``, whether or not the previous chunk is
    still uploading (no coordinated omission). Ends at ``deadline``."""
    auth = {"Authorization": f"Bearer {token}"}
    rng = random.Random(device_id)
    position = rng.randrange(len(template.chunks))  # capture points are not in lock step
    phase = rng.uniform(0, len(template.chunks[position][2]) / bytes_per_s)
    uploads: list[asyncio.Task[None]] = []

    async def put(url: str, data: bytes, digest: str, ticket: str, scheduled: float) -> None:
        started = time.monotonic()
        lags.append(started - scheduled)
        try:
            async with session.put(
                url,
                data=data,
                headers=chunk_headers(token, ticket, digest),
            ) as r:
                await r.read()
                if r.status == 201:
                    tally.latencies.append(time.monotonic() - started)
                    tally.sent += len(data)
                else:
                    errors[str(r.status)] = errors.get(str(r.status), 0) + 1
        except aiohttp.ClientError as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1

    async def register() -> tuple[str, str] | None:
        episode_id, manifest = template.manifest(device_id, "bench-cp")
        async with session.post(
            f"{base}/v1/episodes",
            data=manifest,
            headers={**auth, "Content-Type": "application/json"},
        ) as r:
            if r.status not in (200, 201):
                errors[f"register {r.status}"] = errors.get(f"register {r.status}", 0) + 1
                return None
            return episode_id, str((await r.json())["ticket"])

    # The first episode is registered before the clock starts (a thousand registrations in one
    # instant is a start-up storm, not the steady rate being measured).
    registered = await register()
    arrived.append(device_id)
    await ready.wait()
    began, deadline = window
    due = began + phase
    while due < deadline:
        if registered is None:
            registered = await register()
            if registered is None:
                return
        episode_id, ticket = registered
        registered = None
        url = f"{base}/v1/episodes/{episode_id}/streams"
        for stream, seq, data, digest in template.chunks[position:]:
            if due >= deadline:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            uploads.append(
                asyncio.create_task(put(f"{url}/{stream}/chunks/{seq}", data, digest, ticket, due))
            )
            due += len(data) / bytes_per_s
        position = 0
    await asyncio.gather(*uploads)


async def end_to_end(
    endpoints: Endpoints,
    workdir: Path,
    *,
    capture_points: int,
    rate_mb_s: float,
    seconds: float,
    chunk_bytes: int = 1024 * 1024,
    writer_buffer_mib: int = 512,
    writer_nice: int = 0,
    with_writer: bool = True,
) -> EndToEndFigures:
    """``capture_points`` devices, each on its own connection, uploading pre-encoded humanoid
    episodes at their share of ``rate_mb_s`` through a collector and a writer on the local stack.

    The devices replay one pre-encoded episode under their own ids (as
    :func:`collector_load` does), so the load generator costs little CPU: on a two-core machine
    the simulator's episode generation would otherwise be the bottleneck, not robolake.
    """
    topic = f"bench-e2e-{uuid.uuid4().hex[:8]}"
    await ensure_topics(
        endpoints.kafka_bootstrap,
        [TopicSpec(topic, 8, {"max.message.bytes": str(MAX_RECORD_BYTES)})],
    )
    bucket_endpoints = replace(endpoints, s3_bucket=f"bench-{uuid.uuid4().hex[:10]}")
    from robolake.provision import ensure_bucket

    ensure_bucket(bucket_endpoints)
    devices_file, tokens = bench_devices(workdir / "e2e-devices.json", capture_points)
    env = service_env(bucket_endpoints, topic, devices_file)
    port, metrics = free_port(), free_port()
    collector = Service.start(
        ["collector", "--port", str(port), "--device-rate", "0"], env, workdir / "e2e-collector.log"
    )
    # Without the writer (``with_writer=False``) the chunks stay in Kafka: the run then shows
    # what the collector and broker alone answer at the same rate on the same cores.
    writer = (
        Service.start(
            [
                "writer",
                "--metrics-port",
                str(metrics),
                "--group",
                f"bench-{topic}",
                "--max-buffer-bytes",
                f"{writer_buffer_mib}MiB",
            ],
            env,
            workdir / "e2e-writer.log",
            nice=writer_nice,
        )
        if with_writer
        else None
    )
    template = _Template.build(chunk_bytes)
    tally = UploadTally()
    lags: list[float] = []
    errors: dict[str, int] = {}
    base = f"http://127.0.0.1:{port}"
    try:
        await collector.ready(f"{base}/readyz")
        collector.watch()
        if writer is not None:
            writer.watch()
        per_point = rate_mb_s * 1e6 / capture_points
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            ready = asyncio.Event()
            arrived: list[str] = []
            window: list[float] = []
            points = [
                asyncio.create_task(
                    _paced_capture_point(
                        session,
                        base,
                        tokens[device],
                        device,
                        template,
                        bytes_per_s=per_point,
                        ready=ready,
                        arrived=arrived,
                        window=window,
                        tally=tally,
                        lags=lags,
                        errors=errors,
                    )
                )
                for device in tokens
            ]
            while len(arrived) + sum(p.done() for p in points) < len(tokens):  # noqa: ASYNC110
                await asyncio.sleep(0.2)  # a count over a thousand tasks, not one event
            began = time.monotonic()
            window.extend([began, began + seconds])
            ready.set()
            await asyncio.gather(*points)
            elapsed = time.monotonic() - began
    finally:
        await collector.stop()
        if writer is not None:
            await writer.stop()
    latencies = sorted(tally.latencies)
    lags.sort()
    return EndToEndFigures(
        capture_points=capture_points,
        target_mb_per_s=rate_mb_s,
        mb_per_s=tally.sent / 1e6 / elapsed,  # elapsed: the window plus the last acks
        chunks=len(latencies),
        ack_p50_ms=_quantile(latencies, 0.5) * 1000,
        ack_p99_ms=_quantile(latencies, 0.99) * 1000,
        start_lag_p99_ms=_quantile(lags, 0.99) * 1000,
        collector_rss_mib=collector.peak_rss_mib,
        writer_rss_mib=writer.peak_rss_mib if writer is not None else 0.0,
        writer_buffer_cap_mib=writer_buffer_mib,
        errors=errors,
    )


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else 0.0
