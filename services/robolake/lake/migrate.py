"""``robolake migrate``: register the bucket layout's shard and index objects into the tables.

A deployment that ran before the tables has Parquet objects under ``shards/`` and
``index/episodes/`` (``schemas/shards.md``). Those files lack what the tables need -- Parquet
field ids, the ``date`` partition column, microsecond index timestamps -- so each is rewritten
once into its table's file schema under ``lake/NS/TABLE/data/date=…/migrated-<name>.parquet``
and the rewritten files are committed, one append per table, carrying the writer's recorded
offsets forward. The target key is a function of the source key, so migration is idempotent:
a file already in the table is skipped, and a run cut short re-uploads the same keys and
commits what is missing. ``--dry-run`` prints what would be done and changes nothing.

The writer needs no offsets from this: the migrated rows are the ones below Kafka's committed
offset, and a table-mode writer that finds no position in the tables resumes from that offset
and the bucket checkpoints (``robolake.writer.ledger``). The source objects stay; delete
``shards/`` and ``index/`` once readers are on the tables.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from robolake.endpoints import Endpoints
from robolake.episode.shards import (
    INDEX_PREFIX,
    SHARDS_PREFIX,
    episodes_index,
    parquet_write_options,
    rows_per_row_group,
    shard_schema,
)
from robolake.episode.stream_types import default_registry
from robolake.lake import layout
from robolake.lake.catalog import LakeTables, TableInfo
from robolake.lake.commits import append_files
from robolake.lake.maintenance import Bucket
from robolake.lake.schema import conform

log = logging.getLogger(__name__)

_SHARD = re.compile(r"^shards/([a-z][a-z0-9_]*\.v\d+)/date=(\d{4}-\d{2}-\d{2})/([^/]+)\.parquet$")
_INDEX = re.compile(r"^index/episodes/date=(\d{4}-\d{2}-\d{2})/([^/]+)\.parquet$")


@dataclass(frozen=True)
class Move:
    """One source object and where it goes."""

    source: str
    table: str
    date: dt.date
    target: str
    size: int


@dataclass
class MigrationReport:
    to_do: list[Move] = field(default_factory=list)
    already: int = 0
    skipped: list[str] = field(default_factory=list)
    committed: dict[str, int] = field(default_factory=dict)

    def render(self, dry_run: bool) -> str:
        per_table: dict[str, tuple[int, int]] = {}
        for move in self.to_do:
            files, size = per_table.get(move.table, (0, 0))
            per_table[move.table] = (files + 1, size + move.size)
        verb = "would migrate" if dry_run else "migrated"
        lines = [
            f"{verb} {len(self.to_do)} objects ({sum(m.size for m in self.to_do) / 1e6:.1f} MB); "
            f"{self.already} already in the tables; {len(self.skipped)} not of the layout"
        ]
        for table, (files, size) in sorted(per_table.items()):
            lines.append(f"  {table:<22} {files:>6} files {size / 1e6:>10.1f} MB")
        for key in self.skipped[:10]:
            lines.append(f"  skipped (not a shard or index file): {key}")
        return "\n".join(lines)


def _target(info: TableInfo, date: dt.date, stem: str) -> str:
    return f"{info.prefix}/data/date={date.isoformat()}/migrated-{stem}.parquet"


def plan(tables: LakeTables, bucket: Bucket) -> MigrationReport:
    """What a migration would do: every layout object not yet in its table."""
    report = MigrationReport()
    registry = default_registry()
    present: dict[str, set[str]] = {}

    def in_table(name: str) -> set[str]:
        if name not in present:
            table = tables.load(name)
            present[name] = (
                {task.file.file_path for task in table.scan().plan_files()}
                if table.current_snapshot() is not None
                else set()
            )
        return present[name]

    for prefix in (f"{SHARDS_PREFIX}/", f"{INDEX_PREFIX}/"):
        for obj in bucket.list(prefix):
            shard, index = _SHARD.match(obj.key), _INDEX.match(obj.key)
            if shard is not None:
                type_name, _, version = shard.group(1).rpartition(".v")
                info = tables.ensure_stream_type(registry.get(type_name, int(version)))
                date, stem = dt.date.fromisoformat(shard.group(2)), shard.group(3)
            elif index is not None:
                info = tables.ensure_index()
                date, stem = dt.date.fromisoformat(index.group(1)), index.group(2)
            else:
                report.skipped.append(obj.key)
                continue
            target = _target(info, date, stem)
            if f"s3://{tables.bucket}/{target}" in in_table(info.name):
                report.already += 1
                continue
            report.to_do.append(Move(obj.key, info.name, date, target, obj.size))
    return report


def _rewrite(tables: LakeTables, move: Move, data: bytes) -> bytes:
    """The source file in its table's file schema (ids, ``date``, µs times, missing columns
    as nulls), with the contract's Parquet options."""
    info = tables.info(move.table)
    source = pq.read_table(io.BytesIO(data))
    if move.table == layout.INDEX_TABLE:
        contract = episodes_index().schema
    else:
        key = layout.stream_type_of(move.table)
        assert key is not None
        type_name, _, version = key.rpartition(".v")
        contract = shard_schema(default_registry().get(type_name, int(version)))
    # Older files may lack a column added since (``organisation``): nulls, as readers see it.
    columns = [
        source.column(f.name).cast(f.type)
        if f.name in source.column_names
        else pa.nulls(source.num_rows, f.type)
        for f in contract
    ]
    rows = conform(pa.Table.from_arrays(columns, schema=contract), info.file_schema, move.date)
    average = rows.nbytes / rows.num_rows if rows.num_rows else 1.0
    sink = io.BytesIO()
    pq.write_table(
        rows, sink, row_group_size=rows_per_row_group(average), **parquet_write_options(rows.schema)
    )
    return sink.getvalue()


def migrate(
    endpoints: Endpoints,
    *,
    dry_run: bool = False,
    progress: Callable[[str], None] = lambda line: None,
) -> MigrationReport:
    """Plan, and unless ``dry_run`` rewrite and commit, every layout object not in the tables."""
    tables = LakeTables.from_endpoints(endpoints)
    tables.ensure_namespace()
    tables.ensure_index()
    bucket = Bucket(endpoints)
    report = plan(tables, bucket)
    if dry_run or not report.to_do:
        return report
    by_table: dict[str, list[Move]] = {}
    for move in report.to_do:
        by_table.setdefault(move.table, []).append(move)
    for name, moves in sorted(by_table.items()):
        written: list[tuple[str, pq.FileMetaData, int]] = []
        for i, move in enumerate(moves, 1):
            data = _rewrite(tables, move, bucket.get(move.source))
            bucket.put(move.target, data)
            # Only the footer and size are kept for the commit; the bytes go.
            written.append((move.target, pq.read_metadata(pa.BufferReader(data)), len(data)))
            if i % 50 == 0 or i == len(moves):
                progress(f"{name}: {i}/{len(moves)} files rewritten")
        append_files(tables, name, written, {"robolake.migrated-files": str(len(written))})
        report.committed[name] = len(written)
        progress(f"{name}: committed {len(written)} files")
    return report
