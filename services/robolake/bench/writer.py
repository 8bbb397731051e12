"""The writer alone: MB/s draining a pre-filled topic into Parquet shards on MinIO, from the
first record consumed to the last commit, with its start-up timed apart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from robolake.bench.harness import (
    Service,
    bench_env,
    bench_episode,
    drop_dataset,
    fresh_dataset,
)
from robolake.endpoints import Endpoints
from robolake.episode.records import chunk_record, complete_record, manifest_record
from robolake.episode.stream_types import default_registry
from robolake.episode.topics import MAX_RECORD_BYTES
from robolake.lake.catalog import LakeTables
from robolake.provision import TopicSpec, ensure_bucket, ensure_topics
from robolake.stack.process import cpu_seconds, free_port


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
    #: System of record the writer ran with ("tables" or "bucket").
    record: str = "tables"
    #: Flushes committed to the tables and their mean commit time (all tables of a flush).
    table_commits: int = 0
    table_commit_mean_ms: float = 0.0
    #: Table commits that conflicted (another partition's commit to the same table) and retried.
    table_commit_conflicts: int = 0
    #: A flush's commit time (all its tables), estimated from the histogram's buckets as
    #: Prometheus' ``histogram_quantile`` does: what an operator's dashboard shows.
    table_commit_p50_ms: float = 0.0
    table_commit_p99_ms: float = 0.0
    #: The writers' user + system CPU seconds per MB drained (start-up excluded).
    cpu_ms_per_mb: float = 0.0
    #: Writer processes sharing the drain (and the tables).
    writers: int = 1


@dataclass
class Prefill:
    """What :func:`prefill` produced: the offered bytes and every record, for the audits."""

    topic: str
    chunk_bytes: int  # payload of the chunk records: the offered bytes
    value_bytes: int  # every record's value (manifests and completions too)
    records: int
    keys: list[tuple[str, str, int]]


async def prefill(endpoints: Endpoints, topic: str, target_bytes: int, chunk_bytes: int) -> Prefill:
    """Produce humanoid episodes (manifest, chunks, completion) as the collector writes them
    until ``target_bytes`` of chunks, remembering every chunk's key and counting every record.

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
    filled = Prefill(topic, 0, 0, 0, [])
    try:
        seed = 0
        while filled.chunk_bytes < target_bytes:
            episode = bench_episode(1000 + seed)
            records = []
            manifest = episode.manifest_bytes()
            records.append((manifest, manifest_record(episode.manifest, manifest)))
            chunks = episode.chunks(chunk_bytes)
            for stream, encoded in chunks.items():
                for seq, data in enumerate(encoded):
                    records.append((data, chunk_record(episode.manifest, stream, seq, data)))
                    filled.keys.append((episode.manifest.episode_id, stream, seq))
                    filled.chunk_bytes += len(data)
            done = json.dumps(episode.completion_document(chunks)).encode()
            records.append((done, complete_record(episode.manifest, done)))
            for value, meta in records:
                await producer.send(topic, value, key=meta.key, headers=meta.headers())
                filled.records += 1
                filled.value_bytes += len(value)
            seed += 1
        await producer.flush()
    finally:
        await producer.stop()
    return filled


async def _page(session: aiohttp.ClientSession, url: str) -> str:
    """A Prometheus text page ("" when unreachable)."""
    try:
        async with session.get(url) as response:
            return await response.text()
    except aiohttp.ClientError:
        return ""


def _sample(text: str, name: str) -> float:
    """One unlabelled sample of a Prometheus text page (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def _buckets(text: str, name: str) -> list[tuple[float, float]]:
    """A histogram's cumulative (upper bound, count) pairs, +Inf last."""
    found = []
    prefix = f'{name}_bucket{{le="'
    for line in text.splitlines():
        if line.startswith(prefix):
            bound, _, count = line[len(prefix) :].partition('"} ')
            found.append((float(bound), float(count)))
    return sorted(found)


def _merged(histograms: list[list[tuple[float, float]]]) -> list[tuple[float, float]]:
    """Several processes' histograms of the same buckets as one."""
    totals: dict[float, float] = {}
    for buckets in histograms:
        for bound, count in buckets:
            totals[bound] = totals.get(bound, 0.0) + count
    return sorted(totals.items())


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' estimate: linear within the bucket the rank falls in (the highest finite
    bound if it falls in +Inf); 0 without observations."""
    if not buckets or buckets[-1][1] == 0:
        return 0.0
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / (count - below or 1)
        lower, below = bound, count
    return lower


async def writer_load(
    endpoints: Endpoints,
    workdir: Path,
    *,
    megabytes: int,
    chunk_bytes: int,
    buffer_mib: int = 512,
    flush_mib: int = 128,
    flush_age_s: float = 2.0,
    record: str = "auto",
    writers: int = 1,
    committer: str = "elected",
    prefilled: tuple[str, int, int] | None = None,
    inspect: Callable[[Endpoints], None] | None = None,
    profile: Path | None = None,
) -> WriterFigures:
    """Fill a topic, then run ``writers`` writers in one group until every record is committed.

    Throughput counts from the first record consumed (the writers' own counters) to the last
    commit: joining the group is a one-time cost, reported apart. The tail of the drain waits
    ``flush_age_s`` (the topic has gone quiet, so the last buffers flush by age). Several
    writers share the tables, so their commits conflict: the figures say how often. The topic
    and the dataset's bucket are deleted afterwards.

    ``prefilled`` = (topic, partitions, chunk bytes in it): drain that topic instead (the caller
    fills and deletes it; bench/peers.py drains one topic with the writer and with its peer).
    ``inspect`` is called with the run's dataset after the writers stopped, before the bucket
    is deleted (to count what was stored). ``profile``: a folder where each writer is sampled
    by py-spy from the first record consumed on (``writer.svg`` and ``writer.txt``, then
    ``writer-1``...).
    """
    if prefilled is None:
        topic = f"bench-writer-{uuid.uuid4().hex[:8]}"
        count = max(4, 2 * writers)
        await ensure_topics(
            endpoints.kafka_bootstrap,
            [TopicSpec(topic, count, {"max.message.bytes": str(MAX_RECORD_BYTES)})],
        )
        filling = time.monotonic()
        total = (await prefill(endpoints, topic, megabytes * 1_000_000, chunk_bytes)).chunk_bytes
        prefill_rate = total / 1e6 / (time.monotonic() - filling)
    else:
        (topic, count, total), prefill_rate = prefilled, 0.0
    admin = AIOKafkaAdminClient(bootstrap_servers=endpoints.kafka_bootstrap)
    await admin.start()
    probe = AIOKafkaConsumer(bootstrap_servers=endpoints.kafka_bootstrap)
    await probe.start()
    partitions = [TopicPartition(topic, p) for p in range(count)]
    ends = await probe.end_offsets(partitions)
    await probe.stop()
    group = f"bench-{topic}"
    bucket_endpoints = fresh_dataset(endpoints, "bench")
    ensure_bucket(bucket_endpoints)
    if record != "bucket" and bucket_endpoints.catalog_uri:
        # As a deployment does with `robolake init`: the tables exist before the writers run.
        tables = LakeTables.from_endpoints(bucket_endpoints)
        await asyncio.to_thread(tables.ensure_all, default_registry())
    ports = [free_port() for _ in range(writers)]
    services = [
        Service.start(
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
                "--record",
                record,
                "--committer",
                committer,
            ],
            bench_env(bucket_endpoints, topic, workdir / "none.json"),
            workdir / ("writer.log" if n == 0 else f"writer-{n}.log"),
        )
        for n, port in enumerate(ports)
    ]
    began = time.monotonic()
    first_record: float | None = None
    cpu_at_first = 0.0
    for service in services:
        service.watch()
    urls = [f"http://127.0.0.1:{port}/metrics" for port in ports]
    histogram = "robolake_writer_table_commit_seconds"
    try:
        async with aiohttp.ClientSession() as session:
            deadline = began + 900
            while time.monotonic() < deadline:
                if first_record is None:
                    for url in urls:
                        if _sample(
                            await _page(session, url), "robolake_writer_consumed_bytes_total"
                        ):
                            first_record = time.monotonic()
                            cpu_at_first = sum(cpu_seconds(s.process.pid) for s in services)
                            if profile is not None:
                                for n, service in enumerate(services):
                                    name = "writer" if n == 0 else f"writer-{n}"
                                    service.process.profile(profile / name)
                            break
                offsets = await admin.list_consumer_group_offsets(group)
                committed = {tp: meta.offset for tp, meta in offsets.items() if tp.topic == topic}
                if all(committed.get(tp, 0) >= ends[tp] for tp in partitions):
                    break
                for service in services:
                    service.process.check()
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError(f"writers did not drain {topic} in 900 s")
            done = time.monotonic()
            cpu_at_done = sum(cpu_seconds(s.process.pid) for s in services)
            pages = [await _page(session, url) for url in urls]
        await asyncio.gather(*(service.stop() for service in services))
        if inspect is not None:
            await asyncio.to_thread(inspect, bucket_endpoints)
    finally:
        await asyncio.gather(*(service.stop() for service in services))
        if prefilled is None:
            with contextlib.suppress(KafkaError):
                await admin.delete_topics([topic])
        await admin.close()
        await asyncio.to_thread(drop_dataset, bucket_endpoints)
    commits = sum(_sample(page, f"{histogram}_count") for page in pages)
    commit_s = sum(_sample(page, f"{histogram}_sum") for page in pages)
    conflicts = sum(_sample(page, "robolake_writer_table_commit_conflicts_total") for page in pages)
    buckets = _merged([_buckets(page, histogram) for page in pages])
    start = first_record if first_record is not None else began
    return WriterFigures(
        mb_per_s=total / 1e6 / (done - start),
        megabytes=total / 1e6,
        seconds=done - start,
        startup_s=start - began,
        prefill_mb_per_s=prefill_rate,
        peak_rss_mib=max(service.peak_rss_mib for service in services),
        buffer_cap_mib=buffer_mib,
        flush_mib=flush_mib,
        record="tables" if commits else "bucket",
        table_commits=int(commits),
        table_commit_mean_ms=1000 * commit_s / commits if commits else 0.0,
        table_commit_conflicts=int(conflicts),
        table_commit_p50_ms=1000 * histogram_quantile(0.5, buckets),
        table_commit_p99_ms=1000 * histogram_quantile(0.99, buckets),
        cpu_ms_per_mb=1000 * (cpu_at_done - cpu_at_first) / (total / 1e6),
        writers=writers,
    )
