"""Where a flush's files go and in which columns: the bucket layout or the Iceberg tables'.

The partition logic (:mod:`robolake.writer.partition`) asks its layout for every key and for the
final shape of every file, so the same flush code writes both:

- :class:`BucketLayout`, the original layout of ``schemas/shards.md`` (objects found by listing,
  keys from topic + partition + first offset, overwritten by a replay);
- :class:`TableLayout`, data files of the Iceberg tables (``robolake.lake.layout``), each in
  its table's file schema (field ids, ``date`` column, µs timestamps), under names no other
  writer shares; each index row is written by exactly one flush, since table files are
  appended, never overwritten.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

import pyarrow as pa

from robolake.episode.shards import index_path, shard_path, shard_schema
from robolake.episode.stream_types import StreamType
from robolake.lake import layout as lake_layout
from robolake.lake.catalog import TableInfo
from robolake.lake.schema import conform


class FlushLayout(Protocol):
    """Keys and file shapes of one writer's flushes."""

    #: Files are table data files: each index row is written once, by the flush indexing it.
    tables: bool
    #: Distinguishes this writer process's files and checkpoints ("" in the bucket layout).
    token: str

    def shard_key(
        self,
        stream_type: StreamType,
        date: dt.date,
        topic: str,
        partition: int,
        first: int,
        flush: int,
    ) -> str: ...

    def index_key(
        self, date: dt.date, topic: str, partition: int, first: int, flush: int
    ) -> str: ...

    def shard_rows(self, table: pa.Table, stream_type: StreamType, date: dt.date) -> pa.Table:
        """Buffered shard rows in the columns their file holds."""
        ...

    def index_rows(self, table: pa.Table, date: dt.date) -> pa.Table: ...


class BucketLayout:
    """The listing layout of ``schemas/shards.md``."""

    tables = False
    token = ""

    def shard_key(
        self,
        stream_type: StreamType,
        date: dt.date,
        topic: str,
        partition: int,
        first: int,
        flush: int,
    ) -> str:
        return shard_path(stream_type, date, topic, partition, first)

    def index_key(self, date: dt.date, topic: str, partition: int, first: int, flush: int) -> str:
        return index_path(date, topic, partition, first)

    def shard_rows(self, table: pa.Table, stream_type: StreamType, date: dt.date) -> pa.Table:
        return table.cast(shard_schema(stream_type))

    def index_rows(self, table: pa.Table, date: dt.date) -> pa.Table:
        return table  # ``index_table`` builds the contract's schema


BUCKET_LAYOUT = BucketLayout()


class TableSchemas(Protocol):
    """The tables' file schemas, known before a flush is prepared (no catalog call there)."""

    namespace: str

    def info(self, table: str) -> TableInfo: ...


class TableLayout:
    """Data files of the Iceberg tables."""

    tables = True

    def __init__(self, schemas: TableSchemas, token: str) -> None:
        self.schemas = schemas
        self.token = token

    def shard_key(
        self,
        stream_type: StreamType,
        date: dt.date,
        topic: str,
        partition: int,
        first: int,
        flush: int,
    ) -> str:
        table = lake_layout.shard_table(stream_type.key)
        return lake_layout.data_file_key(
            self.schemas.namespace, table, date, topic, partition, first, flush, self.token
        )

    def index_key(self, date: dt.date, topic: str, partition: int, first: int, flush: int) -> str:
        return lake_layout.data_file_key(
            self.schemas.namespace,
            lake_layout.INDEX_TABLE,
            date,
            topic,
            partition,
            first,
            flush,
            self.token,
        )

    def shard_rows(self, table: pa.Table, stream_type: StreamType, date: dt.date) -> pa.Table:
        info = self.schemas.info(lake_layout.shard_table(stream_type.key))
        # Buffered rows are in the contract's columns already (``to_shard_rows``).
        return conform(table, info.file_schema, date)

    def index_rows(self, table: pa.Table, date: dt.date) -> pa.Table:
        info = self.schemas.info(lake_layout.INDEX_TABLE)
        return conform(table, info.file_schema, date)
