"""Table schemas from the contract: the same columns, in the types every engine reads.

Decisions, and why:

- **Time.** Iceberg format v2 has no nanosecond timestamp (v3's ``timestamp_ns`` is not read by
  every engine yet; Spark 4.x and DuckDB stumble on Parquet ``TIMESTAMP(NANOS)``). Sample times
  stay exact as the int64 ``t_ns`` they have always been; the index's ``started_at``,
  ``ended_at`` and ``indexed_at`` become microsecond ``timestamptz`` (a sub-microsecond part of a
  manifest's start or end time is dropped; the streams' exact ``first_t_ns``/``last_t_ns`` stay).
- **Partitioning.** One table per stream type version already splits by type, so the only
  partition is ``date`` (identity): the UTC date of the episode id's UUIDv7 time, the same for
  every row of an episode -- a filter on an episode or a day prunes to one partition, and a
  day's data of one type makes files of hundreds of MB. ``t_ns`` cannot carry Iceberg's
  ``day()`` (it is a long, not a timestamp), and a row-time partition would split an episode
  that crosses midnight over two partitions and two files.
- **Sort order** (``episode_id``, ``stream``, ``seq``, ``t_ns``), as the writer writes files, so
  an episode's rows are in few row groups and min/max statistics on ``episode_id`` prune.
- **Field ids** are assigned once, at creation, in contract order; a new optional field of a
  stream type version (or of the index) is added by name with a new id (``union_by_name``), and
  ids are never reused. Data files carry the ids (``PARQUET:field_id``), so engines map columns
  by id, not name.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema, assign_fresh_schema_ids
from pyiceberg.table.sorting import NullOrder, SortDirection, SortField, SortOrder
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import IcebergType, ListType, MapType, NestedField, StructType

from robolake.episode.shards import SORT_KEYS

#: Partition column of every table: the episode's date (UTC date of its UUIDv7 id).
DATE_COLUMN: Final = "date"
PARQUET_FIELD_ID: Final = b"PARQUET:field_id"
#: Size robolake's compaction rewrites files to (Iceberg's own property, in compressed bytes
#: here: robolake measures real file sizes; pyiceberg's writer counts uncompressed Arrow bytes).
TARGET_FILE_BYTES: Final = 512 * 1024 * 1024

#: Properties every robolake table is created with.
TABLE_PROPERTIES: Final = {
    "format-version": "2",
    "write.format.default": "parquet",
    "write.parquet.compression-codec": "zstd",
    "write.target-file-size-bytes": str(TARGET_FILE_BYTES),
    # Every commit rewrites metadata.json; keep a bounded history of them.
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "100",
    # Every flush commit adds a manifest; without merging, a table committed once a minute has
    # half a million after a year, and every scan plan and orphan pass reads them all. Merge
    # appends (lake/commits.py) fold the small ones into manifests of up to 8 MB once 100
    # gather, as Iceberg's Java appends do by default (pyiceberg's default is off).
    "commit.manifest-merge.enabled": "true",
    "commit.manifest.min-count-to-merge": "100",
    "commit.manifest.target-size-bytes": str(8 * 1024 * 1024),
}
#: Of those, the ones a table created before they existed gets at its next ``ensure``.
EVOLVING_PROPERTIES: Final = (
    "commit.manifest-merge.enabled",
    "commit.manifest.min-count-to-merge",
    "commit.manifest.target-size-bytes",
)


def table_arrow_schema(contract: pa.Schema) -> pa.Schema:
    """The contract's Arrow schema as a table holds it: µs timestamps, plus ``date``."""
    fields = [_without_ns(f) for f in contract]
    if DATE_COLUMN not in contract.names:
        fields.append(pa.field(DATE_COLUMN, pa.date32(), nullable=False))
    return pa.schema(fields, metadata=contract.metadata)


def _without_ns(f: pa.Field) -> pa.Field:
    t = f.type
    if pa.types.is_timestamp(t) and t.unit == "ns":
        return f.with_type(pa.timestamp("us", tz=t.tz))
    return f


def iceberg_schema(arrow: pa.Schema) -> Schema:
    """A new table's Iceberg schema, ids assigned in column order (stable for a given contract)."""
    converted = Catalog._convert_schema_if_needed(arrow)
    return assign_fresh_schema_ids(converted)


def partition_spec(schema: Schema) -> PartitionSpec:
    source = schema.find_field(DATE_COLUMN)
    return PartitionSpec(
        PartitionField(
            source_id=source.field_id,
            field_id=1000,
            transform=IdentityTransform(),
            name=DATE_COLUMN,
        )
    )


def sort_order(schema: Schema) -> SortOrder:
    names = {f.name for f in schema.fields}
    return SortOrder(
        *[
            SortField(
                source_id=schema.find_field(key).field_id,
                transform=IdentityTransform(),
                direction=SortDirection.ASC,
                null_order=NullOrder.NULLS_FIRST,
            )
            for key in SORT_KEYS
            if key in names
        ]
    )


def with_field_ids(arrow: pa.Schema, table: Schema) -> pa.Schema:
    """``arrow`` with each field (nested ones too) carrying the table's field id.

    Types stay as the contract has them (``fixed_size_list``, ``binary``), which the Parquet
    files keep in their Arrow schema; only the ids are the table's.
    """
    return pa.schema([_field(f, table.as_struct()) for f in arrow], metadata=arrow.metadata)


def _field(f: pa.Field, parent: StructType) -> pa.Field:
    nested: NestedField = parent.field_by_name(f.name)  # type: ignore[assignment]
    if nested is None:
        raise ValueError(f"the table has no column {f.name!r}; evolve its schema first")
    metadata = {**(f.metadata or {}), PARQUET_FIELD_ID: str(nested.field_id).encode()}
    return pa.field(f.name, _typed(f.type, nested.field_type), f.nullable, metadata)


def _typed(t: pa.DataType, iceberg: IcebergType) -> pa.DataType:
    if isinstance(iceberg, ListType):
        value = t.value_field
        element = pa.field(
            value.name,
            _typed(value.type, iceberg.element_type),
            value.nullable,
            {**(value.metadata or {}), PARQUET_FIELD_ID: str(iceberg.element_id).encode()},
        )
        if pa.types.is_fixed_size_list(t):
            return pa.list_(element, t.list_size)
        if pa.types.is_large_list(t):
            return pa.large_list(element)
        return pa.list_(element)
    if isinstance(iceberg, StructType):
        return pa.struct([_field(t.field(i), iceberg) for i in range(t.num_fields)])
    if isinstance(iceberg, MapType):
        raise ValueError("map columns are not in the contract's type grammar")
    return t


def conform(table: pa.Table, file_schema: pa.Schema, date: dt.date) -> pa.Table:
    """``table`` (contract columns) in a table's file schema: its field ids, µs timestamps, the
    constant ``date`` column, and nulls for columns the table has and this contract lacks.

    No copy of the data: columns are re-labelled, not rewritten (a cast to the same physical
    type keeps the buffers; only ns -> µs timestamps are recomputed).
    """
    n = table.num_rows
    columns = []
    for f in file_schema:
        if f.name == DATE_COLUMN and DATE_COLUMN not in table.column_names:
            columns.append(pa.repeat(pa.scalar(date, pa.date32()), n))
        elif f.name in table.column_names:
            columns.append(table.column(f.name).cast(f.type, safe=False))
        else:
            columns.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(columns, schema=file_schema)
