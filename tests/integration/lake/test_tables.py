"""robolake's tables on the stack's real Iceberg REST catalog: created idempotently with stable
field ids, evolved by name, and committed with offsets under compare-and-set."""

from __future__ import annotations

import datetime as dt
import io
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.table import Table

from robolake.endpoints import Endpoints
from robolake.episode.shards import shard_schema
from robolake.episode.stream_types import default_registry
from robolake.lake import layout
from robolake.lake.catalog import LakeTables, TableInfo
from robolake.lake.commits import commit_partition, data_file
from robolake.lake.errors import Fenced
from robolake.lake.offsets import recorded
from robolake.writer.storage import MinioStore

TOPIC = "robolake.chunks.v1"


def _ids(table: Table) -> dict[str, int]:
    return {f.name: f.field_id for f in table.schema().fields}


def test_init_creates_every_table_once_with_stable_ids(lake_endpoints: Endpoints) -> None:
    registry = default_registry()
    first = LakeTables.from_endpoints(lake_endpoints)
    infos = first.ensure_all(registry)
    names = sorted(info.name for info in infos)
    assert layout.INDEX_TABLE in names
    assert "joint_state_v1" in names
    assert "image_v1" in names
    assert first.names() == names
    ids = {name: _ids(first.load(name)) for name in names}

    again = LakeTables.from_endpoints(lake_endpoints)  # a second `robolake init`
    again.ensure_all(registry)
    assert again.names() == names
    assert {name: _ids(again.load(name)) for name in names} == ids

    joint = first.load("joint_state_v1")
    assert [f.name for f in joint.spec().fields] == ["date"]
    assert joint.location() == layout.table_location(
        lake_endpoints.s3_bucket, lake_endpoints.catalog_namespace, "joint_state_v1"
    )
    index = first.load(layout.INDEX_TABLE)
    started = index.schema().find_field("started_at").field_type
    assert str(started) == "timestamptz"  # microseconds: format v2 has no ns timestamps


def test_a_new_optional_field_evolves_the_table_and_keeps_ids(lake_endpoints: Endpoints) -> None:
    tables = LakeTables.from_endpoints(lake_endpoints)
    tables.ensure_namespace()
    contract = shard_schema(default_registry().get("imu", 1))
    before = tables.ensure_table("imu_v1", contract)
    ids = _ids(tables.load("imu_v1"))

    grown = contract.append(pa.field("temperature_c", pa.float32(), nullable=True))
    after = LakeTables.from_endpoints(lake_endpoints).ensure_table("imu_v1", grown)
    evolved = _ids(tables.load("imu_v1"))
    assert {k: v for k, v in evolved.items() if k in ids} == ids
    assert evolved["temperature_c"] > max(ids.values())
    assert (
        after.file_schema.field("temperature_c").metadata[b"PARQUET:field_id"]
        == str(evolved["temperature_c"]).encode()
    )
    assert "temperature_c" not in before.file_schema.names


def _file(info: TableInfo, endpoints: Endpoints, rows: int, name: str) -> tuple[str, bytes]:
    schema = info.file_schema
    arrays = []
    for f in schema:
        if f.name == "date":
            arrays.append(pa.array([dt.date(2026, 3, 1)] * rows, pa.date32()))
        elif f.name in ("seq", "t_ns"):
            arrays.append(pa.array(range(rows), pa.int64()))
        elif pa.types.is_string(f.type):
            arrays.append(pa.array(["x"] * rows))
        elif pa.types.is_fixed_size_list(f.type):
            arrays.append(pa.array([[0.0] * f.type.list_size] * rows, f.type))
        else:
            arrays.append(pa.nulls(rows, f.type))
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), sink)
    key = f"{info.prefix}/data/date=2026-03-01/{name}.parquet"
    data = sink.getvalue()
    MinioStore(endpoints).put(key, data, "application/vnd.apache.parquet")
    return f"s3://{endpoints.s3_bucket}/{key}", data


def test_commits_record_offsets_and_refuse_a_stale_writer(lake_endpoints: Endpoints) -> None:
    tables = LakeTables.from_endpoints(lake_endpoints)
    tables.ensure_namespace()
    info = tables.ensure_stream_type(default_registry().get("imu", 1))
    table = tables.load(info.name)
    path, data = _file(info, lake_endpoints, 3, "a")
    first = commit_partition(
        table,
        [data_file(table.metadata, path, data)],
        topic=TOPIC,
        partition=0,
        expected=None,
        next_offset=10,
    )
    assert not first.already
    assert recorded(tables.load(info.name).metadata, TOPIC).offsets == {0: 10}

    # A zombie read the table before that commit: it expects no offset and must be refused.
    zombie_view = table.refresh()  # any view works: the check reads the committed map
    with pytest.raises(Fenced):
        commit_partition(
            zombie_view,
            [data_file(table.metadata, path, data)],
            topic=TOPIC,
            partition=0,
            expected=None,
            next_offset=7,
        )
    # The owner retrying after a lost response finds its commit and does not add it again.
    again = commit_partition(
        tables.load(info.name),
        [data_file(table.metadata, path, data)],
        topic=TOPIC,
        partition=0,
        expected=None,
        next_offset=10,
    )
    assert again.already
    current = tables.load(info.name)
    assert current.scan().to_arrow().num_rows == 3


def test_concurrent_partitions_both_land_and_keep_each_others_offsets(
    lake_endpoints: Endpoints,
) -> None:
    tables = LakeTables.from_endpoints(lake_endpoints)
    tables.ensure_namespace()
    info = tables.ensure_stream_type(default_registry().get("imu", 1))
    start = tables.load(info.name)
    files = {p: _file(info, lake_endpoints, 2, f"p{p}") for p in range(4)}
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def commit(p: int) -> None:
        try:
            view = Table(
                start.name(), start.metadata, start.metadata_location, start.io, start.catalog
            )
            barrier.wait()
            path, data = files[p]
            commit_partition(
                view,
                [data_file(view.metadata, path, data)],
                topic=TOPIC,
                partition=p,
                expected=None,
                next_offset=100 + p,
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=commit, args=(p,)) for p in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    final = tables.load(info.name)
    assert recorded(final.metadata, TOPIC).offsets == {p: 100 + p for p in range(4)}
    assert final.scan().to_arrow().num_rows == 8


def test_offsets_are_found_past_commits_that_carry_none(lake_endpoints: Endpoints) -> None:
    tables = LakeTables.from_endpoints(lake_endpoints)
    tables.ensure_namespace()
    info = tables.ensure_stream_type(default_registry().get("imu", 1))
    table = tables.load(info.name)
    path, data = _file(info, lake_endpoints, 1, "z")
    commit_partition(
        table,
        [data_file(table.metadata, path, data)],
        topic=TOPIC,
        partition=2,
        expected=None,
        next_offset=42,
        checkpoint="ck-1",
    )
    # A maintenance commit of another engine: no robolake keys in its summary.
    other = tables.load(info.name).transaction()
    with other.update_snapshot().fast_append():
        pass
    other.commit_transaction()
    found = recorded(tables.load(info.name).metadata, TOPIC)
    assert found.offsets == {2: 42}
    assert found.checkpoints == {2: "ck-1"}
    assert found.skipped == 1


def test_flush_commits_merge_their_manifests_and_older_tables_get_the_property(
    lake_endpoints: Endpoints,
) -> None:
    """Each flush commit adds a manifest; merge appends fold them once enough gather (100 in
    production; 4 here), so planning and orphan passes do not read one manifest per commit
    forever. A table made before the property existed gets it at its next ``ensure``."""
    tables = LakeTables.from_endpoints(lake_endpoints)
    tables.ensure_namespace()
    info = tables.ensure_stream_type(default_registry().get("imu", 1))
    table = tables.load(info.name)
    assert table.properties["commit.manifest-merge.enabled"] == "true"
    with table.transaction() as transaction:
        transaction.set_properties({"commit.manifest.min-count-to-merge": "4"})
    commits = 10
    for n in range(commits):
        path, data = _file(info, lake_endpoints, 2, f"m{n}")
        table = tables.load(info.name)
        commit_partition(
            table,
            [data_file(table.metadata, path, data)],
            topic=TOPIC,
            partition=0,
            expected=None if n == 0 else 10 * n,
            next_offset=10 * (n + 1),
        )
    final = tables.load(info.name)
    snapshot = final.current_snapshot()
    assert snapshot is not None
    manifests = snapshot.manifests(final.io)
    assert len(manifests) < 4, [m.manifest_path for m in manifests]
    assert final.scan().to_arrow().num_rows == 2 * commits  # every file once, none lost
    assert len(final.inspect.files()) == commits
    assert recorded(final.metadata, TOPIC).offsets == {0: 10 * commits}

    # As a table created by an older robolake: without the property, until ensured again.
    with final.transaction() as transaction:
        transaction.remove_properties("commit.manifest-merge.enabled")
    assert "commit.manifest-merge.enabled" not in tables.load(info.name).properties
    LakeTables.from_endpoints(lake_endpoints).ensure_stream_type(default_registry().get("imu", 1))
    again = tables.load(info.name).properties
    assert again["commit.manifest-merge.enabled"] == "true"
    assert again["commit.manifest.min-count-to-merge"] == "4"  # an operator's value is kept
