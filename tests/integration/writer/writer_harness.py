"""Helpers for writer integration tests: produce episodes, run writers, read the dataset back.

The central check is :func:`assert_exact`: every produced chunk is in the shards exactly once,
with the same rows -- the rows of each (episode, stream, seq) must equal, value for value, the
decoded chunk that was produced, and the row count must match (a duplicate doubles it).
"""

from __future__ import annotations

import asyncio
import io
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from minio import Minio

from robolake.dataset.storage import uses_tables
from robolake.endpoints import Endpoints
from robolake.episode.checksums import checksum
from robolake.episode.chunks import decode_chunk
from robolake.episode.records import chunk_record, complete_record, manifest_record
from robolake.episode.shards import episodes_index
from robolake.episode.stream_types import default_registry
from robolake.episode.synthetic import SyntheticEpisode, SyntheticSpec, generate_episode
from robolake.episode.topics import MAX_RECORD_BYTES
from robolake.lake import layout as lake_layout
from robolake.lake.catalog import LakeTables
from robolake.launch import ServiceProcess, robolake_argv, service_env
from robolake.writer.metrics import WriterMetrics
from robolake.writer.service import serve
from robolake.writer.settings import WriterSettings

ChunkKey = tuple[str, str, int]  # episode_id, stream, seq


def small_episode(seed: int, *, duration_s: float = 1.5, cameras: int = 1) -> SyntheticEpisode:
    """A short humanoid episode: every stream type, few frames, many small chunks."""
    names = ("head", "wrist_left", "wrist_right")[:cameras]
    return generate_episode(
        SyntheticSpec(seed=seed, duration_s=duration_s, cameras=names, frame_pool=2)
    )


@dataclass
class Produced:
    """What the test produced: chunk key -> checksum, and which episodes were completed."""

    chunks: dict[ChunkKey, str] = field(default_factory=dict)
    tables: dict[ChunkKey, pa.Table] = field(default_factory=dict, repr=False)
    completed: set[str] = field(default_factory=set)
    episodes: set[str] = field(default_factory=set)
    records: int = 0

    def add(self, episode: SyntheticEpisode, stream: str, seq: int, data: bytes) -> None:
        key = (episode.manifest.episode_id, stream, seq)
        stream_type = episode.manifest.stream(stream).stream_type
        self.chunks[key] = checksum(data)
        self.tables[key] = decode_chunk(data).cast(stream_type.wire_schema)


def producer(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        max_request_size=MAX_RECORD_BYTES,
    )


async def produce_episode(
    kafka: AIOKafkaProducer,
    topic: str,
    episode: SyntheticEpisode,
    produced: Produced,
    *,
    max_chunk_bytes: int = 64 * 1024,
    complete: bool = True,
    skip: Iterable[tuple[str, int]] = (),
) -> dict[str, list[bytes]]:
    """Manifest, chunks (except ``skip``), then completion: one episode as the collector would."""
    manifest = episode.manifest
    chunks = episode.chunks(max_chunk_bytes)
    skipped = set(skip)
    value = episode.manifest_bytes()
    meta = manifest_record(manifest, value)
    await kafka.send_and_wait(topic, value, key=meta.key, headers=meta.headers())
    produced.episodes.add(manifest.episode_id)
    produced.records += 1
    for stream, encoded in chunks.items():
        for seq, data in enumerate(encoded):
            if (stream, seq) in skipped:
                continue
            await send_chunk(kafka, topic, episode, stream, seq, data)
            produced.add(episode, stream, seq, data)
            produced.records += 1
    if complete:
        value = _json(episode.completion_document(chunks))
        meta = complete_record(manifest, value)
        await kafka.send_and_wait(topic, value, key=meta.key, headers=meta.headers())
        produced.completed.add(manifest.episode_id)
        produced.records += 1
    return chunks


async def produce_episodes(
    endpoints: Endpoints, topic: str, seeds: Iterable[int], produced: Produced
) -> None:
    """Produce one complete :func:`small_episode` per seed, with a producer of its own."""
    kafka = producer(endpoints.kafka_bootstrap)
    await kafka.start()
    try:
        for seed in seeds:
            await produce_episode(kafka, topic, small_episode(seed), produced)
    finally:
        await kafka.stop()


async def send_chunk(
    kafka: AIOKafkaProducer,
    topic: str,
    episode: SyntheticEpisode,
    stream: str,
    seq: int,
    data: bytes,
) -> None:
    meta = chunk_record(episode.manifest, stream, seq, data)
    await kafka.send_and_wait(topic, data, key=meta.key, headers=meta.headers())


def _json(document: Any) -> bytes:
    import json

    return json.dumps(document, separators=(",", ":")).encode()


async def create_topic(bootstrap: str, partitions: int = 1) -> str:
    name = f"test-dlq-{uuid.uuid4().hex[:16]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    name, partitions, 1, topic_configs={"max.message.bytes": str(MAX_RECORD_BYTES)}
                )
            ]
        )
    finally:
        await admin.close()
    return name


async def read_all(bootstrap: str, topic: str, *, expect: int, timeout: float = 30) -> list[Any]:
    """Records of ``topic`` from the start once ``expect`` arrived (or at the timeout)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=MAX_RECORD_BYTES,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        while len(records) < expect and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                records.extend(batch)
        for batch in (await consumer.getmany(timeout_ms=500)).values():
            records.extend(batch)
    finally:
        await consumer.stop()
    return records


# -- running writers ---------------------------------------------------------------------------


def writer_settings(topic: str, dlq: str, **overrides: Any) -> WriterSettings:
    """Small flushes, short ages, no metrics port: a writer that acts within a second."""
    base = WriterSettings(
        topic=topic,
        dead_letter_topic=dlq,
        group_id=f"writer-{uuid.uuid4().hex[:12]}",
        flush_bytes=512 * 1024,
        flush_age_s=0.5,
        max_buffer_bytes=4 * 1024 * 1024,
        incomplete_after_s=3600.0,
        tick_s=0.1,
        session_timeout_s=6.0,
        max_backoff_s=1.0,
        stored_bytes_interval_s=0.5,
        metrics_port=None,
    )
    return replace(base, **overrides)


@dataclass
class InProcessWriter:
    task: asyncio.Task[None]
    stop_event: asyncio.Event
    metrics: WriterMetrics

    async def stop(self, timeout: float = 60) -> None:
        self.stop_event.set()
        await asyncio.wait_for(self.task, timeout)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """The sample's current value; a sample the registry does not have fails the test.

        Reading a missing sample as 0 made ``>= 0`` and ``== 0`` checks pass on a misspelt name or
        label. Every series a test reads exists from the writer's start (``WriterMetrics``
        creates its labelled series at 0) or once the event it counts happened.
        """
        sample = self.metrics.registry.get_sample_value(name, labels or {})
        if sample is None:
            raise AssertionError(
                f"the writer has no metric sample {name}{labels or {}}; samples of that name: "
                f"{self.samples(name) or 'none'}"
            )
        return float(sample)

    def samples(self, name: str) -> list[str]:
        """Every sample called ``name``, with its labels, for error messages."""
        return [
            f"{sample.name}{sample.labels}={sample.value}"
            for family in self.metrics.registry.collect()
            for sample in family.samples
            if sample.name == name
        ]


def start_writer(
    settings: WriterSettings, endpoints: Endpoints, store: Any = None
) -> InProcessWriter:
    stop = asyncio.Event()
    metrics = WriterMetrics()
    task = asyncio.create_task(serve(settings, endpoints, stop=stop, metrics=metrics, store=store))
    return InProcessWriter(task, stop, metrics)


#: A ``robolake writer`` subprocess: the launcher's process (``log``, ``signal``, ``wait``,
#: ``kill``, ``proc``), so a crash test signals exactly the writer it started.
WriterProcess = ServiceProcess


def spawn_writer(
    log_path: Path,
    endpoints: Endpoints,
    settings: WriterSettings,
    *,
    env: dict[str, str] | None = None,
) -> WriterProcess:
    """A writer process with ``settings`` as flags; its log is appended to, so restart tests
    count lines over every run that shared ``log_path``."""
    args = [
        "writer", "--topic", settings.topic, "--dead-letter-topic", settings.dead_letter_topic,
        "--group", settings.group_id, "--flush-bytes", str(settings.flush_bytes),
        "--flush-age", str(settings.flush_age_s),
        "--max-buffer-bytes", str(settings.max_buffer_bytes),
        "--incomplete-after", str(settings.incomplete_after_s), "--metrics-port", "-1",
        "--stored-bytes-interval", "0", "--session-timeout", str(settings.session_timeout_s),
        "--record", settings.record, "--committer", settings.committer,
        "--commit-interval", str(settings.commit_interval_s),
    ]  # fmt: skip
    return ServiceProcess.start(
        "writer",
        robolake_argv(*args),
        env=service_env(endpoints, extra=env),
        log_path=log_path,
        append=True,
    )


async def wait_until(
    predicate: Callable[[], bool], *, timeout: float, what: str, step: float = 0.2
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(step)


# -- reading the dataset back -----------------------------------------------------------------


def object_keys(s3: Minio, bucket: str, prefix: str) -> list[str]:
    return sorted(
        str(o.object_name) for o in s3.list_objects(bucket, prefix=prefix, recursive=True)
    )


def read_object(s3: Minio, bucket: str, key: str) -> bytes:
    response = s3.get_object(bucket, key)
    try:
        return bytes(response.read())
    finally:
        response.close()
        response.release_conn()


def table_files(endpoints: Endpoints) -> list[tuple[str | None, str]]:
    """(stream type key or None for the index, bucket key) of every data file in the tables'
    current snapshots: what a reader of the tables sees (orphans of failed flushes are not)."""
    tables = LakeTables.from_endpoints(endpoints)
    found: list[tuple[str | None, str]] = []
    for name in tables.names():
        if name == lake_layout.ERASURES_TABLE:
            continue  # the erasure audit, not dataset rows
        table = tables.load(name)
        if table.current_snapshot() is None:
            continue
        for task in table.scan().plan_files():
            found.append(
                (
                    lake_layout.stream_type_of(name),
                    lake_layout.key_of(task.file.file_path, endpoints.s3_bucket),
                )
            )
    return sorted(found, key=lambda item: item[1])


def _index_keys(s3: Minio, bucket: str, tables: Endpoints | None) -> list[str]:
    if tables is None or not uses_tables(tables):
        return object_keys(s3, bucket, "index/")
    return [key for kind, key in table_files(tables) if kind is None]


def _shard_keys(s3: Minio, bucket: str, tables: Endpoints | None) -> list[tuple[str, str]]:
    if tables is None or not uses_tables(tables):
        return [(key.split("/")[1], key) for key in object_keys(s3, bucket, "shards/")]
    return [(kind, key) for kind, key in table_files(tables) if kind is not None]


def read_index(s3: Minio, bucket: str, *, tables: Endpoints | None = None) -> pa.Table | None:
    """Every index row; the newest row per episode wins as readers do. ``tables``: the
    endpoints, to read their Iceberg tables if they have them (else the bucket layout)."""
    read = [
        pq.read_table(io.BytesIO(read_object(s3, bucket, key)))
        for key in _index_keys(s3, bucket, tables)
    ]
    if tables is not None and uses_tables(tables):  # table files also hold ``date``
        read = [table.select(episodes_index().schema.names) for table in read]
    return _newest(read)


def _newest(tables: list[pa.Table]) -> pa.Table | None:
    if not tables:
        return None
    table = pa.concat_tables(tables).sort_by(
        [("episode_id", "ascending"), ("indexed_at", "descending")]
    )
    keep: list[int] = []
    seen: set[str] = set()
    for i, episode_id in enumerate(table.column("episode_id").to_pylist()):
        if episode_id not in seen:
            seen.add(episode_id)
            keep.append(i)
    return table.take(keep)


def indexed(
    s3: Minio, bucket: str, *, tables: Endpoints | None = None
) -> dict[str, dict[str, Any]]:
    table = read_index(s3, bucket, tables=tables)
    if table is None:
        return {}
    plain = pa.schema(
        [f.with_type(pa.int64()) if pa.types.is_timestamp(f.type) else f for f in table.schema]
    )
    return {row["episode_id"]: row for row in table.cast(plain).to_pylist()}


def stored_chunks(
    s3: Minio, bucket: str, *, tables: Endpoints | None = None
) -> tuple[Counter[ChunkKey], dict[ChunkKey, pa.Table], int]:
    """From every shard: rows per chunk key, the rows per chunk key (type's fields), total rows."""
    registry = default_registry()
    counts: Counter[ChunkKey] = Counter()
    chunks: dict[ChunkKey, pa.Table] = {}
    total = 0
    for stream_type_key, key in _shard_keys(s3, bucket, tables):
        name, _, version = stream_type_key.rpartition(".v")
        stream_type = registry.get(name, int(version))
        table = pq.read_table(io.BytesIO(read_object(s3, bucket, key)))
        total += table.num_rows
        groups: dict[ChunkKey, list[int]] = {}
        columns = zip(
            table.column("episode_id").to_pylist(),
            table.column("stream").to_pylist(),
            table.column("seq").to_pylist(),
            strict=True,
        )
        for i, (episode_id, stream, seq) in enumerate(columns):
            groups.setdefault((episode_id, stream, seq), []).append(i)
        fields = [f.name for f in stream_type.wire_schema]
        for chunk_key, rows in groups.items():
            counts[chunk_key] += len(rows)
            part = table.take(rows).select(fields).sort_by([("t_ns", "ascending")])
            chunks[chunk_key] = part.cast(stream_type.wire_schema).combine_chunks()
    return counts, chunks, total


def assert_exact(
    s3: Minio, bucket: str, produced: Produced, *, tables: Endpoints | None = None
) -> int:
    """Each produced chunk is stored once with identical content; nothing else is stored."""
    counts, stored, total = stored_chunks(s3, bucket, tables=tables)
    missing = set(produced.chunks) - set(stored)
    extra = set(stored) - set(produced.chunks)
    assert not missing, f"{len(missing)} chunks lost, e.g. {sorted(missing)[:3]}"
    assert not extra, f"{len(extra)} chunks never produced, e.g. {sorted(extra)[:3]}"
    doubled = [k for k, n in counts.items() if n != produced.tables[k].num_rows]
    assert not doubled, f"{len(doubled)} chunks stored with a different row count (duplicates?)"
    wrong = [k for k, table in produced.tables.items() if not stored[k].equals(table)]
    assert not wrong, f"{len(wrong)} chunks differ from what was produced, e.g. {wrong[:3]}"
    assert total == sum(counts.values())
    return total


def sigkill(process: WriterProcess) -> None:
    process.signal(signal.SIGKILL)
    process.wait()
