"""The partition writer with the Iceberg table layout, without a catalog: file schemas come from
an in-memory :class:`~robolake.writer.layout.TableSchemas`, so the rules are pure logic.

- files carry the tables' field ids and the ``date`` partition column, under unique keys;
- each index row is written by exactly one flush (table files are appended, never rewritten);
- replay floors: chunks below a table's recorded offset update the state but are not stored
  again (a flush that reached that table but not the index before a crash).
"""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest
from writer_fakes import FakeClock, record

from robolake.episode.records import chunk_record, complete_record, manifest_record
from robolake.episode.shards import episodes_index, shard_schema
from robolake.episode.stream_types import default_registry
from robolake.episode.synthetic import SyntheticEpisode, SyntheticSpec, generate_episode
from robolake.lake import layout
from robolake.lake.catalog import TableInfo
from robolake.lake.schema import (
    PARQUET_FIELD_ID,
    iceberg_schema,
    table_arrow_schema,
    with_field_ids,
)
from robolake.writer.batcher import FlushPolicy
from robolake.writer.layout import TableLayout
from robolake.writer.partition import PartitionWriter

NAMESPACE = "ns"
#: Small chunks, so each stream has several (a floor can fall between two).
CHUNK_BYTES = 64 * 1024


class MemorySchemas:
    """Table file schemas as ``robolake init`` would create them, computed in memory."""

    namespace = NAMESPACE

    def __init__(self) -> None:
        contracts = {layout.INDEX_TABLE: episodes_index().schema}
        for stream_type in default_registry():
            contracts[layout.shard_table(stream_type.key)] = shard_schema(stream_type)
        self.infos = {}
        for name, contract in contracts.items():
            arrow = table_arrow_schema(contract)
            self.infos[name] = TableInfo(
                name,
                layout.table_prefix(NAMESPACE, name),
                with_field_ids(arrow, iceberg_schema(arrow)),
            )

    def info(self, table: str) -> TableInfo:
        return self.infos[table]


@pytest.fixture(scope="module")
def episode() -> SyntheticEpisode:
    return generate_episode(SyntheticSpec(seed=5, duration_s=6.0, cameras=("head",), frame_pool=2))


def _writer(clock: FakeClock, **kwargs: object) -> PartitionWriter:
    return PartitionWriter(
        "chunks",
        0,
        policy=FlushPolicy(flush_bytes=10 * 2**20, flush_age_s=5.0),
        clock=clock,
        layout=TableLayout(MemorySchemas(), "abcdef012345"),
        **kwargs,  # type: ignore[arg-type]
    )


def _feed(w: PartitionWriter, episode: SyntheticEpisode, *, complete: bool) -> dict[int, str]:
    """Feed the episode; returns offset -> stream type key of each chunk record."""
    manifest = episode.manifest
    value = episode.manifest_bytes()
    assert w.accept(record(0, manifest_record(manifest, value), value)).outcome == "stored"
    kinds = {}
    offset = 0
    for stream, seq, data in episode.iter_chunks(CHUNK_BYTES):
        offset += 1
        assert w.accept(record(offset, chunk_record(manifest, stream, seq, data), data)).outcome
        kinds[offset] = manifest.stream(stream).stream_type.key
    if complete:
        doc = json.dumps(episode.completion_document(episode.chunks(CHUNK_BYTES))).encode()
        w.accept(record(offset + 1, complete_record(manifest, doc), doc))
    return kinds


def test_table_files_carry_field_ids_and_the_date_column(episode: SyntheticEpisode) -> None:
    clock = FakeClock()
    w = _writer(clock)
    _feed(w, episode, complete=True)
    flush = w.prepare("age")
    assert flush is not None
    kinds = {f.kind for f in flush.files}
    assert "index" in kinds
    assert "joint_state.v1" in kinds
    for file in flush.files:
        table = layout.INDEX_TABLE if file.kind == "index" else layout.shard_table(file.kind)
        assert file.key.startswith(f"lake/{NAMESPACE}/{table}/data/date=")
        assert file.key.endswith("-0000000001-abcdef012345.parquet")
        schema = pq.read_schema(io.BytesIO(file.data))
        assert "date" in schema.names
        assert all(PARQUET_FIELD_ID in (f.metadata or {}) for f in schema)
    assert flush.checkpoint.key.endswith("-0000000001-abcdef012345.json")


def test_an_index_row_is_written_by_one_flush_only(episode: SyntheticEpisode) -> None:
    clock = FakeClock()
    w = _writer(clock, incomplete_after_s=10.0)
    _feed(w, episode, complete=False)
    first = w.prepare("age")
    assert first is not None
    assert not [f for f in first.files if f.kind == "index"]  # not due yet
    w.finished(first)
    clock.now += 11  # the episode times out while the partition is idle: an index-only flush
    timeout = w.prepare("timeout")
    assert timeout is not None
    assert [f.kind for f in timeout.files] == ["index"]
    w.finished(timeout)
    # A later flush at the same position must not write that row again (the bucket layout
    # rewrote the position's index file; a table would count the episode twice).
    w.accept(record(999, *_unrelated_manifest()))
    later = w.prepare("age")
    assert later is not None
    rows = [
        r
        for f in later.files
        if f.kind == "index"
        for r in pq.read_table(io.BytesIO(f.data)).to_pylist()
    ]
    assert episode.manifest.episode_id not in {r["episode_id"] for r in rows}


def _unrelated_manifest() -> tuple[object, bytes]:
    other = generate_episode(SyntheticSpec(seed=6, duration_s=0.5, cameras=("head",), frame_pool=2))
    value = other.manifest_bytes()
    return manifest_record(other.manifest, value), value


def test_chunks_below_a_tables_floor_count_but_are_not_stored_again(
    episode: SyntheticEpisode,
) -> None:
    probe = _writer(FakeClock())
    kinds = _feed(probe, episode, complete=True)
    joint_offsets = sorted(o for o, k in kinds.items() if k == "joint_state.v1")
    assert len(joint_offsets) >= 2
    floor = joint_offsets[len(joint_offsets) // 2]  # the joint table took the first half

    clock = FakeClock()
    w = _writer(clock, floors={"joint_state.v1": floor})
    _feed(w, episode, complete=True)
    flush = w.prepare("age")
    assert flush is not None
    joint = [f for f in flush.files if f.kind == "joint_state.v1"]
    stored = sum(f.rows for f in joint)
    full = sum(f.rows for f in probe.prepare("age").files if f.kind == "joint_state.v1")  # type: ignore[union-attr]
    assert 0 < stored < full
    # The index row counts every chunk, stored now or by the lost flush.
    (index,) = [f for f in flush.files if f.kind == "index"]
    row = pq.read_table(io.BytesIO(index.data)).to_pylist()[0]
    assert row["complete"] is True
    other = [f for f in flush.files if f.kind not in ("index", "joint_state.v1")]
    assert other, "the other stream types are stored in full"
