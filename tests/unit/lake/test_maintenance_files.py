"""Compacted files are cut at the target by their real compressed size, never split a chunk,
and keep every row, in order, with the table's field ids."""

from __future__ import annotations

import datetime as dt
import io
import random

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from robolake.lake.maintenance import encode, encode_slices, merged_slices
from robolake.lake.schema import PARQUET_FIELD_ID

TARGET = 1024 * 1024


def _rows(chunks: int, rows_per_chunk: int, frame_bytes: int) -> pa.Table:
    """Sorted shard-like rows whose binary column does not compress (as camera frames)."""
    rng = random.Random(7)
    episode, stream, seq, t_ns, frame = [], [], [], [], []
    for c in range(chunks):
        for r in range(rows_per_chunk):
            episode.append(f"ep-{c // 4:03d}")
            stream.append("head")
            seq.append(c % 4)
            t_ns.append(c * 1000 + r)
            frame.append(rng.randbytes(frame_bytes))
    schema = pa.schema(
        [
            pa.field(name, kind, nullable=False, metadata={PARQUET_FIELD_ID: str(i + 1).encode()})
            for i, (name, kind) in enumerate(
                [
                    ("episode_id", pa.string()),
                    ("stream", pa.string()),
                    ("seq", pa.int64()),
                    ("t_ns", pa.int64()),
                    ("frame", pa.binary()),
                ]
            )
        ]
    )
    return pa.Table.from_arrays(
        [pa.array(episode), pa.array(stream), pa.array(seq), pa.array(t_ns), pa.array(frame)],
        schema=schema,
    )


def test_files_are_cut_near_the_target_at_chunk_boundaries() -> None:
    rows = _rows(chunks=40, rows_per_chunk=5, frame_bytes=20_000)  # ~4 MB incompressible
    files = list(encode(rows, TARGET))
    sizes = [len(f) for f in files]
    assert len(files) >= 4
    assert all(0.7 * TARGET <= s <= 1.05 * TARGET for s in sizes[:-1]), sizes
    assert sizes[-1] <= 1.05 * TARGET
    read = [pq.read_table(io.BytesIO(f)) for f in files]
    assert pa.concat_tables(read).equals(rows)
    chunks = [
        set(zip(t["episode_id"].to_pylist(), t["seq"].to_pylist(), strict=True)) for t in read
    ]
    for i, a in enumerate(chunks):
        for b in chunks[i + 1 :]:
            assert not a & b, "a chunk was split over two files"
    for table in read:
        assert [f.metadata[PARQUET_FIELD_ID] for f in table.schema] == [
            b"1",
            b"2",
            b"3",
            b"4",
            b"5",
        ]


def test_a_chunk_bigger_than_the_target_stays_in_one_file() -> None:
    rows = _rows(chunks=2, rows_per_chunk=80, frame_bytes=20_000)  # 1.6 MB per chunk
    files = list(encode(rows, TARGET))
    assert len(files) == 2
    assert pa.concat_tables([pq.read_table(io.BytesIO(f)) for f in files]).equals(rows)


def _parquet(rows: pa.Table, row_group_rows: int) -> bytes:
    sink = io.BytesIO()
    pq.write_table(rows, sink, row_group_size=row_group_rows)
    return sink.getvalue()


def _sort(rows: pa.Table) -> pa.Table:
    keys = [(k, "ascending") for k in ("episode_id", "stream", "seq", "t_ns")]
    return rows.take(pc.sort_indices(rows, sort_keys=keys))


def test_a_streaming_merge_of_sorted_files_is_the_sort_of_all_their_rows() -> None:
    # Four "writer flushes" whose episodes interleave, each sorted, in several row groups,
    # plus one file written out of order: the merge must match sorting everything in memory.
    rows = _rows(chunks=64, rows_per_chunk=5, frame_bytes=2_000)
    spread = pa.array([i % 4 for i in range(rows.num_rows)])
    parts = [_sort(rows.filter(pc.equal(spread, k))) for k in range(4)]
    shuffled = parts[3].take(pa.array(random.Random(3).sample(range(parts[3].num_rows), 80)))
    files = [_parquet(p, 37) for p in parts[:3]] + [_parquet(shuffled, 11)]
    expected = _sort(pa.concat_tables([*parts[:3], shuffled]))
    count, slices = merged_slices(files, rows.schema, dt.date(2026, 12, 2), 64 * 1024)
    pieces = list(slices)
    assert count == expected.num_rows
    assert len(pieces) > 4  # slices of a quarter of the target, not one table
    assert pa.concat_tables(pieces).equals(expected)
    keys = [
        set(zip(p["episode_id"].to_pylist(), p["seq"].to_pylist(), strict=True)) for p in pieces
    ]
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            assert not a & b, "a chunk was split over two row groups"
    files_out = list(encode_slices(rows.schema, iter(pieces), TARGET))
    read = pa.concat_tables([pq.read_table(io.BytesIO(f)) for f in files_out])
    assert read.equals(expected)
