"""Parquet encoding of shard files and index files, following ``robolake.episode.shards``.

The contract module owns the layout (paths, columns, sort order, compression, row group
target); this module only turns buffered tables into file bytes. Files are built in memory:
a flush is bounded by the size target, and the bytes go straight to a (multipart) upload.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from robolake.episode.shards import (
    parquet_write_options,
    rows_per_row_group,
    shard_schema,
    sort_shard,
)
from robolake.episode.stream_types import StreamType

PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"


def encode_shard(tables: list[pa.Table], stream_type: StreamType) -> tuple[bytes, int]:
    """One shard file from the buffered rows of one stream type: sorted, zstd, sized row groups.

    Returns the file bytes and the number of rows.
    """
    schema = shard_schema(stream_type)
    table = sort_shard(pa.concat_tables(tables).cast(schema))
    return encode_parquet(table), table.num_rows


def encode_parquet(table: pa.Table) -> bytes:
    """Parquet bytes of ``table`` with the shard contract's options and row-group size."""
    average = table.nbytes / table.num_rows if table.num_rows else 1.0
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        row_group_size=rows_per_row_group(average),
        **parquet_write_options(table.schema),
    )
    return bytes(sink.getvalue())
