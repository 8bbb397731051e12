"""Apache Spark (pyspark 4.1, Iceberg's Spark runtime 1.11) on the tables a real writer filled.

Spark runs in local mode inside the test process (``local[2]``, 1 GB driver), configured against
the stack's REST catalog with Iceberg's Java S3FileIO, from jars Maven resolved into the install
cache (``robolake.stack.spark``): it reads every table like pyiceberg does, then runs Iceberg's
own maintenance procedures on them, and the writer keeps finding its Kafka offsets by walking
the snapshot ancestry. ``make interop`` runs this in its own venv (pyspark is not in ``dev``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import re
import time
from collections.abc import Iterator
from typing import Any

import pyarrow.parquet as pq
import pytest
from engines_harness import FilledLake, assert_exact, t_ns_ranges
from minio import Minio
from pyiceberg.table import Table

from robolake.endpoints import Endpoints
from robolake.lake import layout
from robolake.lake.catalog import LakeTables
from robolake.lake.offsets import OFFSETS_KEY, Recorded, recorded
from robolake.stack import spark as spark_stack

pytestmark = [
    pytest.mark.interop,
    # pyspark's collect() reads each result from a fresh loopback socket to the JVM and leaves
    # closing it to the garbage collector (one ResourceWarning per collect, an error here).
    pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning"),
]

pyspark_sql = pytest.importorskip("pyspark.sql", reason="pyspark is in make interop's venv")

CATALOG = "lake"


@pytest.fixture(scope="module")
def spark(stack_endpoints: Endpoints) -> Iterator[Any]:
    """One local Spark session for the module, on the stack's REST catalog."""
    began = time.monotonic()
    builder = pyspark_sql.SparkSession.builder.appName("robolake-interop")
    conf = spark_stack.session_conf(stack_endpoints, CATALOG, spark_stack.install())
    conf["spark.ui.showConsoleProgress"] = "false"
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    print(f"spark {session.version} session ready in {time.monotonic() - began:.1f} s")
    gateway = session.sparkContext._gateway
    yield session
    session.stop()
    # Close py4j's sockets and end the JVM it launched (it exits when its stdin closes), rather
    # than leaving both to the interpreter's exit: unclosed sockets are errors in this suite.
    gateway.shutdown()
    type(session.sparkContext)._gateway = None
    type(session.sparkContext)._jvm = None
    gateway.proc.stdin.close()
    gateway.proc.wait(timeout=60)


def _ident(lake: FilledLake, table: str) -> str:
    return f"{CATALOG}.{lake.endpoints.catalog_namespace}.{table}"


def _name(lake: FilledLake, table: str) -> str:
    """A table as the procedures take it: catalog-qualified (a bare ``ns.table`` makes Spark try
    ``ns`` as a catalog first and log a CATALOG_NOT_FOUND stack trace before falling back)."""
    return _ident(lake, table)


def _delete_orphans(spark: Any, table: str, older_than_ms: float) -> list[str]:
    """Iceberg's DeleteOrphanFiles action (what the procedure runs), with prefix listing."""
    jvm = spark.sparkContext._jvm
    iceberg_table = jvm.org.apache.iceberg.spark.Spark3Util.loadIcebergTable(
        spark._jsparkSession, table
    )
    result = (
        jvm.org.apache.iceberg.spark.actions.SparkActions.get(spark._jsparkSession)
        .deleteOrphanFiles(iceberg_table)
        .olderThan(int(older_than_ms))
        .usePrefixListing(True)
        .execute()
    )
    found = []
    locations = result.orphanFileLocations().iterator()
    while locations.hasNext():
        found.append(str(locations.next()))
    return found


def _offsets(tables: LakeTables, topic: str) -> dict[str, Recorded]:
    return {name: recorded(tables.load(name).metadata, topic) for name in tables.names()}


def _now_sql(ago: dt.timedelta = dt.timedelta(0)) -> str:
    """A Spark timestamp literal for now, or ``ago`` before (the session's time zone is UTC)."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None) - ago
    return f"TIMESTAMP '{now.isoformat(sep=' ', timespec='milliseconds')}'"


async def test_spark_reads_every_table_as_pyiceberg_does(
    spark: Any, filled_lake: FilledLake
) -> None:
    tables = filled_lake.tables()
    names = tables.names()
    ns = filled_lake.endpoints.catalog_namespace
    shown = {row["tableName"] for row in spark.sql(f"SHOW TABLES IN {CATALOG}.{ns}").collect()}
    assert shown == set(names)
    assert layout.INDEX_TABLE in names
    assert {"joint_state_v1", "image_v1", "imu_v1", "action_v1"} <= set(names)

    for name in names:
        table = tables.load(name)
        snapshot = table.current_snapshot()
        assert snapshot is not None, name
        sid = snapshot.snapshot_id
        expected = table.scan(snapshot_id=sid).count()
        assert expected > 0, name
        read = spark.read.option("versionAsOf", str(sid)).table(_ident(filled_lake, name))
        assert read.count() == expected, name
        assert (
            spark.sql(
                f"SELECT count(*) AS n FROM {_ident(filled_lake, name)} VERSION AS OF {sid}"
            ).collect()[0]["n"]
            == expected
        ), name
        if name != layout.INDEX_TABLE:
            ranges = {
                row["episode_id"]: (row["lo"], row["hi"])
                for row in spark.sql(
                    f"SELECT episode_id, min(t_ns) AS lo, max(t_ns) AS hi "
                    f"FROM {_ident(filled_lake, name)} GROUP BY episode_id"
                ).collect()
            }
            assert ranges == t_ns_ranges(table), name
            assert len(ranges) == len(filled_lake.produced.episodes), name

    # The index (one row per indexing of an episode): scene, task, completeness and µs start
    # times equal, row for row.
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    mine = sorted(
        (r["episode_id"], r["scene"], r["task"], r["complete"],
         (r["started_at"] - epoch) // dt.timedelta(microseconds=1))
        for r in tables.load(layout.INDEX_TABLE).scan().to_arrow().to_pylist()
    )  # fmt: skip
    theirs = sorted(
        tuple(r)
        for r in spark.sql(
            "SELECT episode_id, scene, task, complete, unix_micros(started_at) "
            f"FROM {_ident(filled_lake, layout.INDEX_TABLE)}"
        ).collect()
    )
    assert theirs == mine
    assert {r[0] for r in mine} == filled_lake.produced.episodes

    # A joint position and a camera frame's bytes, value for value.
    joints = (
        tables.load("joint_state_v1")
        .scan()
        .to_arrow()
        .sort_by([("episode_id", "ascending"), ("t_ns", "ascending")])
    )
    first = joints.slice(0, 1).to_pylist()[0]
    row = spark.sql(
        f"SELECT position, stream, seq FROM {_ident(filled_lake, 'joint_state_v1')} "
        f"WHERE episode_id = '{first['episode_id']}' AND t_ns = {first['t_ns']}"
    ).collect()
    assert len(row) == 1
    assert list(row[0]["position"]) == pytest.approx(list(first["position"]))
    assert (row[0]["stream"], row[0]["seq"]) == (first["stream"], first["seq"])
    images = tables.load("image_v1").scan().to_arrow()
    image = images.slice(0, 1).to_pylist()[0]
    got = spark.sql(
        f"SELECT data FROM {_ident(filled_lake, 'image_v1')} "
        f"WHERE episode_id = '{image['episode_id']}' AND stream = '{image['stream']}' "
        f"AND t_ns = {image['t_ns']}"
    ).collect()
    assert [bytes(r["data"]) for r in got] == [image["data"]]


async def test_spark_maintenance_keeps_the_offsets_a_restarted_writer_resumes_from(
    spark: Any, filled_lake: FilledLake, s3_client: Minio
) -> None:
    lake = filled_lake
    tables = lake.tables()
    names = tables.names()
    before = _offsets(tables, lake.topic)
    assert all(found.offsets for found in before.values()), before
    counts = {name: tables.load(name).scan().count() for name in names}
    files_before = {name: len(tables.load(name).scan().plan_files()) for name in names}
    assert max(files_before.values()) > 1, files_before

    # 1. Compaction by Spark: one commit per table that carries no robolake summary keys.
    for name in names:
        result = spark.sql(
            f"CALL {CATALOG}.system.rewrite_data_files(table => '{_name(lake, name)}', "
            "options => map('rewrite-all', 'true'))"
        ).collect()[0]
        assert result["rewritten_data_files_count"] == files_before[name], name
    tables = lake.tables()
    for name in names:
        table = tables.load(name)
        snapshot = table.current_snapshot()
        assert snapshot is not None, name
        summary = snapshot.summary
        assert summary is not None, name
        assert summary.operation.value == "replace", name
        assert OFFSETS_KEY.format(topic=lake.topic) not in summary.additional_properties
        found = recorded(table.metadata, lake.topic)
        assert found.offsets == before[name].offsets, name
        assert found.checkpoints == before[name].checkpoints, name
        assert found.skipped == 1, name  # found by walking past Spark's commit
        assert table.scan().count() == counts[name], name
        assert len(table.scan().plan_files()) <= files_before[name], name
        _assert_field_ids(s3_client, lake, table)

    # 2. Expiry that keeps the last two snapshots: Spark's and the writer's last commit.
    for name in names:
        spark.sql(
            f"CALL {CATALOG}.system.expire_snapshots(table => '{_name(lake, name)}', "
            f"older_than => {_now_sql()}, retain_last => 2)"
        ).collect()
    tables = lake.tables()
    for name in names:
        table = tables.load(name)
        assert len(table.metadata.snapshots) == 2, name
        assert recorded(table.metadata, lake.topic).offsets == before[name].offsets, name

    # 3. Orphan removal, listing the table locations by prefix through S3FileIO. The procedure
    # refuses an `older_than` under 24 hours (a concurrent writer's fresh files would look like
    # orphans), so with the default-safe 25 hours it finds nothing among this test's young files;
    # Iceberg's action API, which has no such floor, then removes a stray file planted now.
    stray_key = f"{layout.table_prefix(lake.endpoints.catalog_namespace, 'joint_state_v1')}"
    stray_key += "/data/date=2026-01-01/stray-not-committed.parquet"
    s3_client.put_object(lake.endpoints.s3_bucket, stray_key, io.BytesIO(b"PAR1"), 4)
    day_ago = _now_sql(dt.timedelta(hours=25))
    for name in names:
        rows = spark.sql(
            f"CALL {CATALOG}.system.remove_orphan_files(table => '{_name(lake, name)}', "
            f"older_than => {day_ago}, prefix_listing => true)"
        ).collect()
        assert rows == [], name
    await asyncio.sleep(1.5)
    removed = []
    for name in names:
        removed += _delete_orphans(spark, _ident(lake, name), time.time() * 1000)
    keys = [layout.key_of(path, lake.endpoints.s3_bucket) for path in removed]
    # Besides the stray file, only zero-byte "directory" marker keys (ending in "/") that a
    # pyarrow S3 write may leave go: no metadata references them.
    assert [k for k in keys if not k.endswith("/")] == [stray_key], keys
    print(f"remove_orphan_files (action, prefix listing) removed: {keys}")
    tables = lake.tables()
    for name in names:
        table = tables.load(name)
        assert table.scan().count() == counts[name], name
        for task in table.scan().plan_files():  # every referenced file is still there
            s3_client.stat_object(
                lake.endpoints.s3_bucket,
                layout.key_of(task.file.file_path, lake.endpoints.s3_bucket),
            )
        assert recorded(table.metadata, lake.topic).offsets == before[name].offsets, name

    # 4. A restarted writer resumes where the tables say, with more episodes: nothing lost or
    # stored twice, the rows Spark rewrote included.
    await lake.produce(range(704, 707))
    await lake.run_writer()
    assert_exact(s3_client, lake.endpoints.s3_bucket, lake.produced, tables=lake.endpoints)
    after = _offsets(lake.tables(), lake.topic)
    for name in names:
        assert after[name].skipped == 0, name  # the writer committed on top of Spark's snapshot
        for partition, offset in before[name].offsets.items():
            assert after[name].offsets.get(partition, 0) >= offset, name


async def test_expire_retain_last_1_after_a_spark_rewrite_expires_the_offsets(
    spark: Any, filled_lake: FilledLake, s3_client: Minio
) -> None:
    """Documented (docs/tables.md): external maintenance must keep the newest snapshot with
    robolake's summary keys. ``retain_last => 1`` right after Spark's rewrite does not."""
    lake = filled_lake
    tables = lake.tables()
    names = tables.names()
    before = _offsets(tables, lake.topic)
    assert all(found.offsets for found in before.values())
    for name in names:
        spark.sql(
            f"CALL {CATALOG}.system.rewrite_data_files(table => '{_name(lake, name)}', "
            "options => map('rewrite-all', 'true'))"
        ).collect()
        spark.sql(
            f"CALL {CATALOG}.system.expire_snapshots(table => '{_name(lake, name)}', "
            f"older_than => {_now_sql()}, retain_last => 1)"
        ).collect()
    tables = lake.tables()
    for name in names:
        table = tables.load(name)
        assert len(table.metadata.snapshots) == 1, name
        found = recorded(table.metadata, lake.topic)
        assert found.offsets == {}, name
        assert found.snapshot_id is None, name
        assert found.skipped == 1, name
    # What a writer restarted now does: the tables know nothing of the partitions, so it falls
    # back to Kafka's committed offset (kept up to date as a hint after each commit) and the
    # bucket checkpoints.
    await lake.produce(range(704, 706))
    log = await lake.run_writer()
    # The first run started with nothing committed anywhere ("offset None"); the restart
    # resumed at Kafka's committed offsets, found by no table.
    assert re.findall(r"resuming at committed offset \d+ ", log), log[-3000:]
    assert_exact(s3_client, lake.endpoints.s3_bucket, lake.produced, tables=lake.endpoints)
    assert all(recorded(t.metadata, lake.topic).offsets for t in map(lake.tables().load, names))


def _assert_field_ids(s3: Minio, lake: FilledLake, table: Table) -> None:
    """The data files (Spark's, after its rewrite) map their columns to the table's field ids."""
    ids = {f.name: f.field_id for f in table.schema().fields}
    for task in table.scan().plan_files():
        key = layout.key_of(task.file.file_path, lake.endpoints.s3_bucket)
        response = s3.get_object(lake.endpoints.s3_bucket, key)
        try:
            schema = pq.read_schema(io.BytesIO(response.read()))
        finally:
            response.close()
            response.release_conn()
        assert {f.name: int(f.metadata[b"PARQUET:field_id"]) for f in schema} == ids, key
