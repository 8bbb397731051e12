"""Faults: kill -9 in the middle of a flush, a rebalance between two writers, MinIO stopping
during a flush. Each ends with the same check: every produced chunk stored exactly once."""

from __future__ import annotations

import asyncio
import signal
import threading
from pathlib import Path

from minio import Minio
from writer_harness import (
    Produced,
    assert_exact,
    indexed,
    object_keys,
    produce_episodes,
    spawn_writer,
    start_writer,
    wait_until,
    writer_settings,
)

from robolake.endpoints import Endpoints
from robolake.stack.process import ProcessRecord, stop
from robolake.stack.stack import Stack
from robolake.writer.settings import ENV_UPLOAD_PAUSE
from robolake.writer.storage import MinioStore


async def test_kill_9_mid_flush_then_restart_gives_exactly_the_same_rows(
    endpoints: Endpoints, kafka_topic: str, dlq_topic: str, s3_client: Minio, tmp_path: Path
) -> None:
    settings = writer_settings(kafka_topic, dlq_topic, flush_bytes=256 * 1024, record="bucket")
    log_path = tmp_path / "writer.log"
    first = spawn_writer(log_path, endpoints, settings, env={ENV_UPLOAD_PAUSE: "1.0"})
    produced = Produced()
    try:
        await produce_episodes(endpoints, kafka_topic, range(300, 303), produced)
        # Wait for one committed flush, then produce more and wait for the next flush to be
        # half uploaded (the first flush may well have taken everything produced so far).
        await wait_until(lambda: "flushed offsets" in first.log(), timeout=60, what="a flush")
        seen = first.log().count("fault injection")
        await produce_episodes(endpoints, kafka_topic, range(303, 306), produced)
        await wait_until(
            lambda: first.log().count("fault injection") > seen,
            timeout=60,
            what="a flush in progress",
        )
        first.signal(signal.SIGKILL)
        assert first.wait() == -signal.SIGKILL
    finally:
        first.kill()
    leftovers = object_keys(s3_client, endpoints.s3_bucket, "_writer/checkpoints/")
    assert leftovers, "the killed flush left no checkpoint"

    second = spawn_writer(log_path, endpoints, settings)
    try:
        await wait_until(
            lambda: (
                len(indexed(s3_client, endpoints.s3_bucket, tables=endpoints))
                == len(produced.episodes)
            ),
            timeout=90,
            what="every episode indexed after the restart",
        )
        second.signal(signal.SIGTERM)
        assert second.wait() == 0, second.log()[-3000:]
    finally:
        second.kill()
    assert "removed" in second.log(), "recovery did not clean up the uncommitted flush"
    rows = assert_exact(s3_client, endpoints.s3_bucket, produced, tables=endpoints)
    print(f"kill -9 mid-flush: {len(produced.chunks)} chunks, {rows} rows, no loss, no duplicate")


async def test_two_writers_and_rebalances_lose_and_duplicate_nothing(
    endpoints: Endpoints, kafka_topic: str, dlq_topic: str, s3_client: Minio, tmp_path: Path
) -> None:
    settings = writer_settings(kafka_topic, dlq_topic, flush_bytes=256 * 1024)
    produced = Produced()
    bucket = endpoints.s3_bucket
    a = spawn_writer(tmp_path / "a.log", endpoints, settings)
    b = None
    try:
        await produce_episodes(endpoints, kafka_topic, range(400, 402), produced)
        await wait_until(lambda: "flushed offsets" in a.log(), timeout=60, what="writer A flushing")
        b = spawn_writer(tmp_path / "b.log", endpoints, settings)
        await produce_episodes(endpoints, kafka_topic, range(402, 404), produced)
        await wait_until(
            lambda: "resuming at committed offset" in b.log(), timeout=60, what="B assigned"
        )
        await produce_episodes(endpoints, kafka_topic, range(404, 405), produced)
        a.signal(signal.SIGTERM)  # B takes over every partition
        assert a.wait() == 0, a.log()[-3000:]
        await produce_episodes(endpoints, kafka_topic, range(405, 407), produced)
        await wait_until(
            lambda: len(indexed(s3_client, bucket, tables=endpoints)) == len(produced.episodes),
            timeout=90,
            what="every episode indexed",
        )
        b.signal(signal.SIGTERM)
        assert b.wait() == 0, b.log()[-3000:]
    finally:
        a.kill()
        if b is not None:
            b.kill()
    assert "flushed offsets" in b.log()
    rows = assert_exact(s3_client, bucket, produced, tables=endpoints)
    print(f"rebalances: {len(produced.episodes)} episodes, {rows} rows, exact")


class _StopMinioDuringFirstShardUpload:
    """The real store; the first shard upload (a table data file, or a ``shards/`` object of the
    bucket layout) stops the MinIO server underneath it -- and with it the catalog's storage."""

    def __init__(self, store: MinioStore, stack: Stack) -> None:
        self._store = store
        self._stack = stack
        self._lock = threading.Lock()
        self.stopped = False

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        with self._lock:
            shard = key.startswith("shards/") or ("/data/" in key and "episodes_index" not in key)
            if shard and not self.stopped:
                self.stopped = True
                record = ProcessRecord.from_json(self._stack._load()["components"]["minio"])
                stop(record, timeout=30, name="minio")
        self._store.put(key, data, content_type)


async def test_minio_stopped_during_a_flush_recovers_by_itself_without_loss(
    endpoints: Endpoints,
    kafka_topic: str,
    dlq_topic: str,
    s3_client: Minio,
    local_stack: Stack,
) -> None:
    settings = writer_settings(kafka_topic, dlq_topic)
    store = _StopMinioDuringFirstShardUpload(MinioStore(endpoints), local_stack)
    writer = start_writer(settings, endpoints, store=store)
    produced = Produced()
    restarted = False
    try:
        await produce_episodes(endpoints, kafka_topic, range(500, 503), produced)
        await wait_until(
            lambda: (
                writer.value("robolake_writer_flush_failures_total") >= 2
                and writer.value("robolake_writer_paused") == 1
            ),
            timeout=60,
            what="flush retries while MinIO is down",
        )
        failures = writer.value("robolake_writer_flush_failures_total")
        await asyncio.to_thread(local_stack.up)
        restarted = True
        await wait_until(
            lambda: (
                len(indexed(s3_client, endpoints.s3_bucket, tables=endpoints))
                == len(produced.episodes)
            ),
            timeout=90,
            what="every episode indexed after MinIO came back",
        )
        assert writer.value("robolake_writer_paused") == 0
    finally:
        if not restarted:
            await asyncio.to_thread(local_stack.up)
        await writer.stop()
    rows = assert_exact(s3_client, endpoints.s3_bucket, produced, tables=endpoints)
    print(f"MinIO outage: {failures:.0f} failed flush attempts, then {rows} rows, exact")
