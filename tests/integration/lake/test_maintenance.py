"""Table maintenance on the real stack: compaction, snapshot expiry and orphan removal over the
small files real ``robolake writer`` processes committed (``--record tables``).

Each test counts against what was produced (every chunk once, value for value, through the
tables' current snapshots: what readers see), and checks that what it is about really happened
(files fewer, a commit conflict met, a compaction killed with its file uploaded, bytes gone
from the bucket), so a test whose event missed its window fails instead of passing vacuously.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import io
import math
import re
import signal
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
from minio import Minio
from prometheus_client.parser import text_string_to_metric_families
from writer_harness import (
    Produced,
    WriterProcess,
    assert_exact,
    indexed,
    object_keys,
    produce_episode,
    producer,
    read_object,
    small_episode,
    spawn_writer,
    table_files,
    wait_until,
    writer_settings,
)

from robolake.endpoints import Endpoints
from robolake.episode.shards import SORT_KEYS
from robolake.lake import layout
from robolake.lake.catalog import LakeTables
from robolake.lake.maintenance import (
    ENV_COMPACT_PAUSE,
    CompactionSettings,
    Maintenance,
    PartitionResult,
    partitions,
)
from robolake.lake.offsets import recorded
from robolake.lake.schema import PARQUET_FIELD_ID
from robolake.launch import ServiceProcess, robolake_argv, service_env
from robolake.stack.process import free_port

#: Larger than a partition of the tests' data (a few MB): every writer file is small, and a
#: partition's small files become one file. (Cutting files at the target is tested on
#: incompressible rows in tests/unit/lake/test_maintenance_files.py.)
TARGET = 4 * 1024 * 1024
#: Every partition is closed at once (no grace days, no minimum age).
SETTINGS = CompactionSettings(
    target_file_bytes=TARGET, min_file_bytes=TARGET, grace_days=0, min_age_s=0
)


async def _produce(
    endpoints: Endpoints, topic: str, seeds: range, produced: Produced, *, gap_s: float = 0.8
) -> None:
    """Episodes ``gap_s`` apart: longer than the writers' flush age, so each episode lands in
    flushes of its own -- many small files, as a real deployment's trickle makes them."""
    kafka = producer(endpoints.kafka_bootstrap)
    await kafka.start()
    try:
        for seed in seeds:
            await produce_episode(kafka, topic, small_episode(seed), produced)
            await asyncio.sleep(gap_s)
    finally:
        await kafka.stop()


async def _until_indexed(
    s3: Minio, endpoints: Endpoints, produced: Produced, writer: WriterProcess
) -> None:
    def done() -> bool:
        writer.check()  # a writer that died fails the test now, not at the timeout
        return len(indexed(s3, endpoints.s3_bucket, tables=endpoints)) == len(produced.episodes)

    await wait_until(done, timeout=120, what="every episode indexed")


async def _write(
    endpoints: Endpoints,
    topic: str,
    dlq: str,
    s3: Minio,
    log_path: Path,
    seeds: range,
    produced: Produced,
    **overrides: object,
) -> WriterProcess:
    """A writer run to completion: produce, wait until indexed, SIGTERM (flush, exit 0)."""
    settings = writer_settings(topic, dlq, record="tables", **overrides)
    writer = spawn_writer(log_path, endpoints, settings)
    try:
        await _produce(endpoints, topic, seeds, produced)
        await _until_indexed(s3, endpoints, produced, writer)
        writer.signal(signal.SIGTERM)
        assert writer.wait() == 0, writer.log()[-3000:]
    finally:
        writer.kill()
    return writer


def _offsets(endpoints: Endpoints, topic: str) -> dict[str, dict[int, int]]:
    tables = LakeTables.from_endpoints(endpoints)
    return {name: recorded(tables.load(name).metadata, topic).offsets for name in tables.names()}


def _file_counts(endpoints: Endpoints) -> dict[str, int]:
    counts: dict[str, int] = {}
    for kind, _ in table_files(endpoints):
        name = layout.INDEX_TABLE if kind is None else layout.shard_table(kind)
        counts[name] = counts.get(name, 0) + 1
    return counts


def _small_files(endpoints: Endpoints) -> dict[tuple[str, object], list[int]]:
    """(table, date) -> sizes of its files below the target, in the current snapshots."""
    tables = LakeTables.from_endpoints(endpoints)
    found: dict[tuple[str, object], list[int]] = {}
    for name in tables.names():
        for part in partitions(tables.load(name)):
            sizes = [f.size for f in part.files if f.size < TARGET]
            if sizes:
                found[(name, part.date)] = sizes
    return found


def _scrape(port: int) -> dict[tuple[str, str], float]:
    """(sample name, its one label value or "") -> value, from a service's /metrics."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    return {
        (sample.name, next(iter(sample.labels.values()), "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _lake_bytes(s3: Minio, bucket: str) -> int:
    return sum(int(o.size or 0) for o in s3.list_objects(bucket, prefix="", recursive=True))


async def test_compaction_rewrites_small_files_keeping_rows_offsets_and_totals(
    lake_endpoints: Endpoints, kafka_topic: str, dlq_topic: str, s3_client: Minio, tmp_path: Path
) -> None:
    endpoints = lake_endpoints
    produced = Produced()
    await _write(endpoints, kafka_topic, dlq_topic, s3_client, tmp_path / "w.log",
                 range(100, 106), produced, flush_bytes=256 * 1024)  # fmt: skip
    before = _file_counts(endpoints)
    small_before = _small_files(endpoints)
    offsets = _offsets(endpoints, kafka_topic)
    tables = LakeTables.from_endpoints(endpoints)
    records = {n: _total(tables, n, "total-records") for n in tables.names()}
    assert min(before.values()) >= 3, f"the writer made too few files to compact: {before}"

    maintenance = Maintenance.from_endpoints(endpoints)
    began = time.monotonic()
    results = maintenance.compact(SETTINGS)
    seconds = time.monotonic() - began
    assert results
    assert all(r.outcome == "compacted" for r in results), results

    after = _file_counts(endpoints)
    assert all(after[name] <= count for name, count in before.items())
    assert sum(after.values()) < sum(before.values()) / 2, (before, after)
    # Per table partition: the small files were merged; what is still small is what is left
    # of a bin (its last cut), one per bin of up to two targets of input.
    for where, sizes in _small_files(endpoints).items():
        bins = math.ceil(sum(small_before[where]) / (2 * TARGET))
        assert len(sizes) <= max(1, bins), (where, small_before[where], sizes)
    assert_exact(s3_client, endpoints.s3_bucket, produced, tables=endpoints)
    assert set(indexed(s3_client, endpoints.s3_bucket, tables=endpoints)) == produced.episodes
    assert _offsets(endpoints, kafka_topic) == offsets, "compaction lost the writer's offsets"

    compacted = [key for _, key in table_files(endpoints) if "/compacted-" in key]
    assert compacted
    for name in tables.names():
        table = tables.load(name)
        snapshot = table.current_snapshot()
        assert snapshot is not None
        assert snapshot.summary is not None
        if name in {r.table for r in results}:
            assert snapshot.summary.operation.value == "replace"
        tasks = list(table.scan().plan_files())
        assert _total(tables, name, "total-data-files") == len(tasks) == after[name]
        assert _total(tables, name, "total-records") == records[name]
        assert sum(t.file.record_count for t in tasks) == records[name]
        assert _total(tables, name, "total-files-size") == sum(
            t.file.file_size_in_bytes for t in tasks
        )
    # The compacted files: field ids, sorted rows, real sizes in the manifests.
    for key in compacted:
        data = read_object(s3_client, endpoints.s3_bucket, key)
        parquet = pq.read_table(io.BytesIO(data))
        assert all(f.metadata and PARQUET_FIELD_ID in f.metadata for f in parquet.schema)
        keys = [k for k in SORT_KEYS if k in parquet.column_names]
        rows = parquet.select(keys).to_pylist()
        assert rows == sorted(rows, key=lambda r: tuple(r[k] for k in keys)), key
        assert re.search(r"/data/date=\d{4}-\d{2}-\d{2}/compacted-[0-9a-f]{32}\.parquet$", key)
    # No file of the tables is over the target (cut by real compressed size).
    sizes = sorted(
        (
            t.file.file_size_in_bytes
            for n in tables.names()
            for t in tables.load(n).scan().plan_files()
        ),
        reverse=True,
    )
    assert sizes[0] <= TARGET * 1.3, sizes
    print(
        f"\ncompaction: {sum(before.values())} files -> {sum(after.values())} files in "
        f"{seconds:.1f} s; {sum(r.bytes_in for r in results)} -> "
        f"{sum(r.bytes_out for r in results)} bytes; average compacted file "
        f"{sum(r.bytes_out for r in results) / sum(r.files_out for r in results) / 1e3:.0f} kB, "
        f"largest {sizes[0] / 1e3:.0f} kB (target {TARGET / 1e3:.0f} kB); per table "
        f"{ {n: (before[n], after[n]) for n in sorted(before)} }"
    )
    again = maintenance.compact(SETTINGS)
    assert [r for r in again if r.files_in] == [], "a second run rewrote compacted files again"


def _total(tables: LakeTables, name: str, key: str) -> int:
    snapshot = tables.load(name).current_snapshot()
    summary = snapshot.summary if snapshot is not None else None
    value = summary.get(key) if summary is not None else None
    return int(value) if value is not None else 0


async def test_a_writer_committing_during_a_compaction_loses_nothing(
    lake_endpoints: Endpoints, kafka_topic: str, dlq_topic: str, s3_client: Minio, tmp_path: Path
) -> None:
    endpoints = lake_endpoints
    produced = Produced()
    settings = writer_settings(kafka_topic, dlq_topic, record="tables", flush_bytes=256 * 1024)
    writer = spawn_writer(tmp_path / "w.log", endpoints, settings)
    maintenance = Maintenance.from_endpoints(endpoints)
    try:
        await _produce(endpoints, kafka_topic, range(200, 204), produced)
        await _until_indexed(s3_client, endpoints, produced, writer)
        # Compaction holds still after each compacted file, before its commit, while the
        # writer commits new flushes to the same tables: every commit of the compaction then
        # meets a changed table, re-checks and retries.
        paused = dataclasses.replace(SETTINGS, pause_s=1.5)
        compaction = asyncio.create_task(asyncio.to_thread(maintenance.compact, paused))
        await _produce(endpoints, kafka_topic, range(204, 210), produced)
        results: list[PartitionResult] = await compaction
        await _until_indexed(s3_client, endpoints, produced, writer)
        writer.signal(signal.SIGTERM)
        assert writer.wait() == 0, writer.log()[-3000:]
    finally:
        writer.kill()
    assert results
    assert all(r.outcome == "compacted" for r in results), results
    conflicts = sum(r.conflicts for r in results)
    assert conflicts > 0, "no compaction commit met a concurrent writer commit"
    assert any(r.rebased for r in results), "no writer commit landed during a rewrite"
    assert maintenance.metrics.conflicts._value.get() == conflicts
    assert_exact(s3_client, endpoints.s3_bucket, produced, tables=endpoints)
    assert set(indexed(s3_client, endpoints.s3_bucket, tables=endpoints)) == produced.episodes
    print(f"\nconcurrent: {conflicts} conflicts retried over {len(results)} partition commits")


async def test_kill_9_of_compact_mid_run_then_rerun_loses_and_doubles_nothing(
    lake_endpoints: Endpoints, kafka_topic: str, dlq_topic: str, s3_client: Minio, tmp_path: Path
) -> None:
    endpoints = lake_endpoints
    produced = Produced()
    await _write(endpoints, kafka_topic, dlq_topic, s3_client, tmp_path / "w.log",
                 range(300, 304), produced, flush_bytes=256 * 1024)  # fmt: skip
    committed = table_files(endpoints)
    args = ["compact", "--grace-days", "0", "--min-age", "0", "--target-file-size", str(TARGET)]
    killed = ServiceProcess.start(
        "compact",
        robolake_argv(*args),
        env=service_env(endpoints, extra={ENV_COMPACT_PAUSE: "60"}),
        log_path=tmp_path / "compact.log",
    )
    try:
        await wait_until(lambda: "fault injection" in killed.log(), timeout=60,
                         what="a compacted file uploaded, not committed")  # fmt: skip
        killed.signal(signal.SIGKILL)
        assert killed.wait() == -signal.SIGKILL
    finally:
        killed.kill()
    uploaded = re.findall(r"after uploading (\S+) \(fault injection\)", killed.log())
    assert uploaded
    assert all(uploaded)
    stored = set(object_keys(s3_client, endpoints.s3_bucket, layout.LAKE_PREFIX))
    assert set(uploaded) <= stored, "the killed run's compacted file is not in the bucket"
    assert table_files(endpoints) == committed, "the killed run committed something"
    assert_exact(s3_client, endpoints.s3_bucket, produced, tables=endpoints)

    rerun = ServiceProcess.start(
        "compact", robolake_argv(*args), env=service_env(endpoints), log_path=tmp_path / "2.log"
    )
    assert rerun.wait(timeout=120) == 0, rerun.log()[-3000:]
    assert "compacted" in rerun.log()
    assert len(table_files(endpoints)) < len(committed)
    assert not set(uploaded) & {key for _, key in table_files(endpoints)}
    assert_exact(s3_client, endpoints.s3_bucket, produced, tables=endpoints)
    assert set(indexed(s3_client, endpoints.s3_bucket, tables=endpoints)) == produced.episodes
    # The killed run's upload is an orphan, and orphan removal takes it.
    report = Maintenance.from_endpoints(endpoints).remove_orphans(0)
    assert set(uploaded) <= set(report.removed)
    assert not set(uploaded) & set(object_keys(s3_client, endpoints.s3_bucket, "lake/"))


async def test_maintenance_between_writer_restarts_loses_nothing_and_the_writer_resumes(
    lake_endpoints: Endpoints, kafka_topic: str, dlq_topic: str, s3_client: Minio, tmp_path: Path
) -> None:
    endpoints = lake_endpoints
    produced = Produced()
    log_path = tmp_path / "writer.log"
    await _write(endpoints, kafka_topic, dlq_topic, s3_client, log_path, range(400, 404),
                 produced, group_id="maint-first")  # fmt: skip
    offsets = _offsets(endpoints, kafka_topic)

    small = {key for _, key in table_files(endpoints)}

    # The maintenance service (``robolake compact --interval``): compaction, expiry and orphan
    # removal every cycle, /metrics served; SIGTERM ends it with exit 0.
    port = free_port()
    args = [
        "compact", "--interval", "1", "--grace-days", "0", "--min-age", "0",
        "--target-file-size", str(TARGET), "--min-file-size", str(TARGET),
        "--expire", "--snapshot-retention", "0", "--remove-orphans", "--orphan-retention", "0",
        "--metrics-host", "127.0.0.1", "--metrics-port", str(port),
    ]  # fmt: skip
    service = ServiceProcess.start(
        "maintenance", robolake_argv(*args), env=service_env(endpoints),
        log_path=tmp_path / "maintenance.log",
    )  # fmt: skip
    try:

        def cycled() -> bool:
            service.check()
            samples = _scrape(port)
            return (
                all(
                    samples.get(("robolake_maintenance_last_success_timestamp_seconds", task), 0)
                    > 0
                    for task in ("compact", "expire", "orphans")
                )
                and samples.get(("robolake_maintenance_table_snapshots", "joint_state_v1")) == 1
            )

        await wait_until(cycled, timeout=90, what="a maintenance cycle with every task done")
        samples = _scrape(port)
        service.signal(signal.SIGTERM)
        assert service.wait() == 0, service.log()[-3000:]
    finally:
        service.kill()
    assert "maintenance stopped after" in service.log()
    assert samples[("robolake_maintenance_compaction_rewritten_files_total", "joint_state_v1")] > 1
    assert samples[("robolake_maintenance_table_data_files", "joint_state_v1")] == 1
    assert samples[("robolake_maintenance_expired_snapshots_total", "joint_state_v1")] > 0
    assert samples[("robolake_maintenance_orphan_bytes_removed_total", "")] > 0
    assert samples[("robolake_maintenance_failures_total", "compact")] == 0
    remaining = set(object_keys(s3_client, endpoints.s3_bucket, ""))
    assert not small & remaining, "the replaced small files are still in the bucket"
    tables = LakeTables.from_endpoints(endpoints)
    for name in tables.names():
        assert len(tables.load(name).metadata.snapshots) == 1, name
    named = recorded(tables.load(layout.INDEX_TABLE).metadata, kafka_topic).checkpoints
    assert named
    assert set(named.values()) <= set(object_keys(s3_client, endpoints.s3_bucket, "_writer/"))
    assert _offsets(endpoints, kafka_topic) == offsets
    assert_exact(s3_client, endpoints.s3_bucket, produced, tables=endpoints)

    # A new consumer group: Kafka has no committed offset for it, so only the tables (and the
    # checkpoint their newest snapshot names) can tell the writer where to resume; resuming
    # from the beginning would store every chunk twice.
    second = await _write(endpoints, kafka_topic, dlq_topic, s3_client, log_path,
                          range(404, 407), produced, group_id="maint-second")  # fmt: skip
    log = second.log()
    assert "resuming from the tables" in log, log[-3000:]
    resumed = re.findall(r"resuming at committed offset (\d+)", log)
    assert resumed, log[-3000:]
    assert_exact(s3_client, endpoints.s3_bucket, produced, tables=endpoints)
    assert set(indexed(s3_client, endpoints.s3_bucket, tables=endpoints)) == produced.episodes
    after = _offsets(endpoints, kafka_topic)
    for name, per_partition in offsets.items():
        assert all(after[name][p] >= o for p, o in per_partition.items())


async def test_orphan_removal_deletes_orphans_and_expired_files_and_keeps_the_rest(
    lake_endpoints: Endpoints, kafka_topic: str, dlq_topic: str, s3_client: Minio, tmp_path: Path
) -> None:
    endpoints = lake_endpoints
    bucket = endpoints.s3_bucket
    produced = Produced()
    await _write(endpoints, kafka_topic, dlq_topic, s3_client, tmp_path / "w.log",
                 range(500, 504), produced)  # fmt: skip
    small = {key for _, key in table_files(endpoints)}
    maintenance = Maintenance.from_endpoints(endpoints)
    assert any(r.outcome == "compacted" for r in maintenance.compact(SETTINGS))
    replaced = small - {key for _, key in table_files(endpoints)}
    assert replaced

    prefix = layout.table_prefix(endpoints.catalog_namespace, "joint_state_v1")
    today = dt.datetime.now(dt.UTC).date().isoformat()
    planted = [
        f"{prefix}/data/date={today}/planted-orphan.parquet",
        f"{prefix}/metadata/planted-orphan.avro",
        f"{layout.CHECKPOINT_ROOT}{kafka_topic}/000/{0:019d}-{0:010d}-0123456789ab.json",
    ]
    for key in planted:
        s3_client.put_object(bucket, key, io.BytesIO(b"x" * 1000), 1000)
    foreign = f"{layout.CHECKPOINT_ROOT}{kafka_topic}/000/{0:019d}.json"  # listing layout's form
    s3_client.put_object(bucket, foreign, io.BytesIO(b"{}"), 2)

    # Young files are kept under a retention, and a dry run deletes nothing.
    assert not set(planted) & set(maintenance.remove_orphans(3600).removed)
    everything = set(object_keys(s3_client, bucket, ""))
    dry = maintenance.remove_orphans(0, dry_run=True)
    assert set(planted) <= set(dry.removed)
    assert set(object_keys(s3_client, bucket, "")) == everything

    # While the snapshots before compaction are retained, the small files they reference stay.
    kept = maintenance.remove_orphans(0)
    assert set(planted) <= set(kept.removed)
    assert not replaced & set(kept.removed)
    assert replaced <= set(object_keys(s3_client, bucket, "lake/"))

    assert sum(maintenance.expire(0).values()) > 0
    bytes_before = _lake_bytes(s3_client, bucket)
    report = maintenance.remove_orphans(0)
    remaining = set(object_keys(s3_client, bucket, ""))
    assert replaced <= set(report.removed), "files of expired snapshots were kept"
    assert not replaced & remaining, "a removed file is still in the bucket"
    assert not set(planted) & remaining
    assert foreign in remaining, "a listing-layout checkpoint was touched"
    assert _lake_bytes(s3_client, bucket) == bytes_before - report.bytes
    assert report.bytes > 0
    # Everything a retained snapshot references is still there, and readers read every row.
    tables = LakeTables.from_endpoints(endpoints)
    for name in tables.names():
        assert maintenance.referenced(tables.load(name)) <= remaining, name
    named = {
        key
        for name in [layout.INDEX_TABLE]
        for key in recorded(tables.load(name).metadata, kafka_topic).checkpoints.values()
    }
    assert named
    assert named <= remaining
    assert_exact(s3_client, bucket, produced, tables=endpoints)
    assert set(indexed(s3_client, bucket, tables=endpoints)) == produced.episodes
    print(
        f"\norphans: removed {len(report.removed)} objects, {report.bytes} bytes "
        f"({len(replaced)} replaced data files); kept {report.kept}"
    )
