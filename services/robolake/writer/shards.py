"""Parquet encoding of shard files and index files, following ``robolake.episode.shards``.

The contract module owns the layout (paths, columns, sort order, compression, row group
target); this module only turns buffered tables into file bytes. Files are built in memory:
a flush is bounded by the size target, and the bytes go straight to a (multipart) upload.

No row is copied before encoding: the buffered chunks are put in the contract's order as whole
chunks (:func:`~robolake.episode.shards.concat_in_order`), so a flush holds its buffered chunks
and the Parquet bytes, nothing more. Sorting rows (``take``) instead cost more CPU than
everything else the writer does together, and a second copy of the shard in memory.
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

from robolake.episode.shards import parquet_write_options, rows_per_row_group

PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"


def encode_parquet(table: pa.Table) -> bytes:
    """Parquet bytes of ``table`` with the shard contract's options and row-group size."""
    average = table.nbytes / table.num_rows if table.num_rows else 1.0
    # Into a BytesIO, whose getvalue() hands over its bytes without the copy that turning an
    # Arrow buffer into bytes costs (one whole shard less in memory per flush).
    sink = io.BytesIO()
    pq.write_table(
        table,
        sink,
        row_group_size=rows_per_row_group(average),
        **parquet_write_options(table.schema),
    )
    return sink.getvalue()
