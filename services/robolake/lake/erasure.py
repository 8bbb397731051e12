"""``robolake episodes delete``: remove episodes from every table, and record who, why and when.

A person recorded by a capture point may withdraw consent; an episode may have been captured
where it must not be. Erasure removes every row of the episodes from every table -- the stream
type tables and the episodes index -- as a row-level delete: each data file holding one of
them is rewritten without its rows (copy on write, so every engine reads the result without
applying delete files) and the files are swapped in one ``overwrite`` snapshot per partition,
carrying the writer's offsets forward and re-checked against concurrent commits
(:meth:`robolake.lake.maintenance.Maintenance.replace_files`). An audit row per episode goes to
``erasures_v1``: episode, reason, who asked, when, which tables and how many rows.

The old files stay readable through older snapshots (time travel) until those are expired and
the orphans removed (``robolake compact --expire --remove-orphans``, or the one-shot commands):
only then are the bytes gone from storage. Outside the tables, the episode's records remain in
the Kafka topic until its retention passes, and the writer keeps the episode's bookkeeping
(ids and counts, no sensor data) in its checkpoint for the dedup window after indexing.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from robolake.endpoints import Endpoints
from robolake.episode.ids import is_uuid7
from robolake.lake import layout
from robolake.lake.catalog import LakeTables
from robolake.lake.commits import append_files
from robolake.lake.errors import LakeError
from robolake.lake.maintenance import (
    Bucket,
    Maintenance,
    encode,
    file_schema,
    partitions,
)
from robolake.lake.schema import TARGET_FILE_BYTES, conform

log = logging.getLogger(__name__)

AUDIT_SCHEMA = pa.schema(
    [
        pa.field("episode_id", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("requested_by", pa.string(), nullable=False),
        pa.field("erased_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("tables", pa.list_(pa.string()), nullable=False),
        pa.field("rows_removed", pa.int64(), nullable=False),
    ]
)


@dataclass
class ErasureReport:
    """Rows removed per table and episode."""

    rows: dict[tuple[str, str], int] = field(default_factory=dict)
    snapshots: dict[str, list[int]] = field(default_factory=dict)

    def render(self) -> str:
        if not self.rows:
            return "no rows of these episodes in any table"
        lines = []
        for (table, episode), count in sorted(self.rows.items()):
            lines.append(f"  {table:<22} {episode}  {count:>8} rows removed")
        return "\n".join(lines)


def _filter(episode_ids: Sequence[str]) -> str:
    # Validated UUIDs: no quotes can reach the expression.
    return "episode_id in (" + ", ".join(f"'{e}'" for e in episode_ids) + ")"


def erase(
    endpoints: Endpoints,
    episode_ids: Sequence[str],
    *,
    reason: str,
    requested_by: str,
    clock: Callable[[], float] = time.time,
) -> ErasureReport:
    """Remove every row of ``episode_ids`` from every table; one audit row per episode."""
    bad = [e for e in episode_ids if not is_uuid7(e)]
    if bad:
        raise LakeError(f"not episode ids (UUIDv7): {', '.join(bad)}")
    if not reason.strip():
        raise LakeError("an erasure needs a reason (--reason)")
    tables = LakeTables.from_endpoints(endpoints)
    bucket = Bucket(endpoints)
    maintenance = Maintenance(tables, bucket)
    wanted = pa.array(sorted(set(episode_ids)), pa.string())
    report = ErasureReport()
    for name in tables.names():
        if name == layout.ERASURES_TABLE:
            continue
        table = tables.load(name)
        if table.current_snapshot() is None:
            continue
        holding = {
            task.file.file_path for task in table.scan(row_filter=_filter(episode_ids)).plan_files()
        }
        if not holding:
            continue
        schema = file_schema(name, table)
        planned = table.current_snapshot().snapshot_id  # type: ignore[union-attr]
        prefix = layout.key_of(table.location(), bucket.name)
        for part in partitions(table):
            old = [f for f in part.files if f.path in holding]
            if not old:
                continue
            date = part.date or dt.date(1970, 1, 1)
            rows = pa.concat_tables(
                [
                    conform(
                        pq.read_table(
                            pa.BufferReader(bucket.get(layout.key_of(f.path, bucket.name)))
                        ),
                        schema,
                        date,
                    )
                    for f in old
                ]
            )
            hit = pc.is_in(rows.column("episode_id"), value_set=wanted)
            removed = rows.filter(hit)
            if removed.num_rows == 0:
                continue  # the files' bounds allowed the episode, their rows do not hold it
            kept = rows.filter(pc.invert(hit))
            new = []
            for data in encode(kept, TARGET_FILE_BYTES) if kept.num_rows else []:
                key = layout.rewritten_key(prefix, part.date, "erasure")
                bucket.put(key, data)
                new.append((key, data))
            result = maintenance.replace_files(name, part, old, new, planned)
            if result.outcome != "compacted":
                raise LakeError(
                    f"{name} date={part.date}: the rewrite could not be committed "
                    f"({result.outcome}); nothing of it landed, run the erasure again"
                )
            report.snapshots.setdefault(name, []).append(result.snapshot_id or 0)
            counts = pc.value_counts(removed.column("episode_id")).to_pylist()
            for item in counts:
                key_ = (name, str(item["values"]))
                report.rows[key_] = report.rows.get(key_, 0) + int(item["counts"])
            log.info(
                "%s date=%s: removed %d rows of erased episodes", name, part.date, removed.num_rows
            )
    _audit(tables, bucket, episode_ids, report, reason, requested_by, clock())
    return report


def _audit(
    tables: LakeTables,
    bucket: Bucket,
    episode_ids: Sequence[str],
    report: ErasureReport,
    reason: str,
    requested_by: str,
    now: float,
) -> None:
    info = tables.ensure_table(layout.ERASURES_TABLE, AUDIT_SCHEMA)
    when = dt.datetime.fromtimestamp(now, dt.UTC)
    rows = pa.Table.from_pylist(
        [
            {
                "episode_id": episode,
                "reason": reason,
                "requested_by": requested_by,
                "erased_at": when,
                "tables": sorted({t for t, e in report.rows if e == episode}),
                "rows_removed": sum(n for (t, e), n in report.rows.items() if e == episode),
            }
            for episode in sorted(set(episode_ids))
        ],
        schema=AUDIT_SCHEMA,
    )
    data = next(iter(encode(conform(rows, info.file_schema, when.date()), TARGET_FILE_BYTES)))
    key = layout.rewritten_key(info.prefix, when.date(), "erasure")
    bucket.put(key, data)
    append_files(
        tables, layout.ERASURES_TABLE, [(key, pq.read_metadata(pa.BufferReader(data)), len(data))]
    )
