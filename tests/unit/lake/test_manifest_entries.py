"""A manifest entry built from a shard's footer: statistics where the footer has them, and no
warning for the columns written without (media bytes, list elements)."""

from __future__ import annotations

import io
import logging

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC
from pyiceberg.table.metadata import new_table_metadata
from pyiceberg.table.sorting import UNSORTED_SORT_ORDER

from robolake.episode.shards import parquet_write_options
from robolake.lake.commits import data_file_from_footer
from robolake.lake.schema import iceberg_schema


def test_columns_without_statistics_are_planned_as_such(caplog: pytest.LogCaptureFixture) -> None:
    table = pa.table(
        {
            "t_ns": pa.array([5, 9], pa.int64()),
            "position": pa.array([[1.0, 2.0], [3.0]], pa.list_(pa.float32())),
            "frame": pa.array([b"jpeg-1", b"jpeg-2"]),
        }
    )
    options = parquet_write_options(table.schema)
    options.pop("sorting_columns")
    sink = io.BytesIO()
    pq.write_table(table, sink, **options)
    footer = pq.read_metadata(pa.BufferReader(sink.getvalue()))
    assert not footer.row_group(0).column(1).is_stats_set  # the case this is about
    metadata = new_table_metadata(
        iceberg_schema(table.schema),
        UNPARTITIONED_PARTITION_SPEC,
        UNSORTED_SORT_ORDER,
        "s3://bucket/t",
        {},
    )
    with caplog.at_level(logging.WARNING, logger="pyiceberg"):
        entry = data_file_from_footer(metadata, "s3://bucket/t/f.parquet", footer, 123)
    assert [r.getMessage() for r in caplog.records] == []
    assert entry.record_count == 2
    assert entry.file_size_in_bytes == 123
    t_ns = metadata.schema().find_field("t_ns").field_id
    assert entry.lower_bounds is not None
    assert t_ns in entry.lower_bounds  # statistics kept where the footer has them
