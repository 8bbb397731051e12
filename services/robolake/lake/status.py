"""What the tables hold, from snapshot summaries alone: O(1) in the number of data files.

Every Iceberg snapshot summary carries running totals (``total-data-files``,
``total-records``, ``total-files-size``), so operators' gauges and the demo's report read one
metadata object per table and never list the bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

from robolake.lake.catalog import LakeTables


@dataclass(frozen=True)
class TableStatus:
    """One table's current snapshot, in numbers."""

    name: str
    snapshot_id: int | None
    data_files: int
    records: int
    bytes: int
    snapshots: int

    @property
    def average_file_bytes(self) -> float:
        return self.bytes / self.data_files if self.data_files else 0.0


def table_status(tables: LakeTables, name: str) -> TableStatus:
    table = tables.load(name)
    snapshot = table.current_snapshot()
    summary = snapshot.summary if snapshot is not None else None

    def total(key: str) -> int:
        value = summary.get(key) if summary is not None else None
        return int(value) if value is not None else 0

    return TableStatus(
        name=name,
        snapshot_id=snapshot.snapshot_id if snapshot is not None else None,
        data_files=total("total-data-files"),
        records=total("total-records"),
        bytes=total("total-files-size"),
        snapshots=len(table.metadata.snapshots),
    )


def status(tables: LakeTables) -> list[TableStatus]:
    """Every robolake table of the namespace, in name order."""
    return [table_status(tables, name) for name in tables.names()]


def render(rows: list[TableStatus]) -> str:
    """A fixed-width table for terminals."""
    lines = [f"{'table':<22} {'snapshot':>20} {'files':>7} {'rows':>11} {'MB':>10} {'avg MB':>8}"]
    for row in rows:
        lines.append(
            f"{row.name:<22} {row.snapshot_id if row.snapshot_id is not None else '-':>20} "
            f"{row.data_files:>7} {row.records:>11} {row.bytes / 1e6:>10.1f} "
            f"{row.average_file_bytes / 1e6:>8.2f}"
        )
    return "\n".join(lines)
