"""``robolake report contributions``: what each organisation and capture point contributed.

A data-voucher claim needs, per organisation and capture point, how much usable robot data it
delivered in a period: episodes, hours, bytes, and how much of it is complete or flagged. The
report counts the newest index row of every episode whose ``started_at`` (when it was recorded)
falls in ``[since, until]`` (UTC days, both included), with the organisation the collector
stamped at upload (the index's ``organisation``; the device registry only for rows written before
it, :func:`~robolake.dataset.episodes.legacy_organisations`) and the shard bytes attributed to
each episode
(:mod:`robolake.ops.attribution`, reading only the shard files those episodes list).

Hours are ``ended_at - started_at`` from the manifests; ``share_complete`` and ``share_flagged``
are fractions of the group's episodes.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, TextIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from robolake.dataset.storage import s3_filesystem
from robolake.endpoints import Endpoints
from robolake.errors import RobolakeError
from robolake.ops.attribution import ShardAttribution, StoredFile
from robolake.ops.episodes import LegacySource, read_index
from robolake.ops.inventory import aggregate, enrich, stored_bytes

log = logging.getLogger(__name__)

ReportFormat = Literal["csv", "parquet", "table"]

#: The report's columns, in order.
COLUMNS: Final = (
    "organisation",
    "capture_point_id",
    "episodes",
    "complete_episodes",
    "flagged_episodes",
    "share_complete",
    "share_flagged",
    "hours",
    "bytes",
)


class ReportError(RobolakeError):
    """The report cannot be produced as asked; the message says what to change."""


@dataclass(frozen=True)
class Period:
    """UTC days ``since`` to ``until``, both included; ``until`` None = up to now."""

    since: dt.date
    until: dt.date | None = None

    def __post_init__(self) -> None:
        if self.until is not None and self.until < self.since:
            raise ReportError(f"--until {self.until} is before --since {self.since}")

    def bounds_ns(self) -> tuple[int, int | None]:
        """``[start, end)`` in nanoseconds since the epoch."""

        def midnight(day: dt.date) -> int:
            return int(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp()) * 10**9

        end = None if self.until is None else midnight(self.until + dt.timedelta(days=1))
        return midnight(self.since), end


def _in_period(index: pa.Table, period: Period) -> pa.Table:
    start, end = period.bounds_ns()
    started = pc.cast(index["started_at"], pa.int64())
    mask = pc.greater_equal(started, start)
    if end is not None:
        mask = pc.and_(mask, pc.less(started, end))
    return index.filter(mask)


def _listed_files(fs: pafs.FileSystem, bucket: str, episodes: pa.Table) -> list[StoredFile]:
    keys = sorted({str(k) for keys in episodes["shard_files"].to_pylist() for k in keys or []})
    files = []
    for info in fs.get_file_info([f"{bucket}/{key}" for key in keys]):
        if info.type != pafs.FileType.File:
            log.warning("shard %s listed in the index is missing from the bucket", info.path)
            continue
        files.append(
            StoredFile(
                info.path.removeprefix(f"{bucket}/"), int(info.size or 0), info.mtime_ns or 0
            )
        )
    return files


def contributions(endpoints: Endpoints, period: Period, legacy: LegacySource = None) -> pa.Table:
    """The report as a table of :data:`COLUMNS`, one row per (organisation, capture point)."""
    index = _in_period(read_index(endpoints), period)
    bytes_by_episode = stored_bytes(index)
    legacy_rows = index.filter(pc.is_null(index["stored_bytes"]))
    if legacy_rows.num_rows:
        # Rows written before ``stored_bytes``: apportion the files they name (still there in
        # the bucket layout; in the tables until compaction replaces them).
        fs = s3_filesystem(endpoints)
        attribution = ShardAttribution(fs, endpoints.s3_bucket)
        split = attribution.bytes_by_episode(_listed_files(fs, endpoints.s3_bucket, legacy_rows))
        for episode_id in legacy_rows["episode_id"].to_pylist():
            bytes_by_episode[str(episode_id)] = split.get(str(episode_id), 0)
    totals = aggregate(
        enrich(index, bytes_by_episode, legacy), ["organisation", "capture_point_id"]
    )
    episodes = pc.cast(totals["episodes"], pa.float64())
    columns = {
        "organisation": totals["organisation"],
        "capture_point_id": totals["capture_point_id"],
        "episodes": totals["episodes"],
        "complete_episodes": totals["complete_episodes"],
        "flagged_episodes": totals["flagged_episodes"],
        "share_complete": pc.divide(pc.cast(totals["complete_episodes"], pa.float64()), episodes),
        "share_flagged": pc.divide(pc.cast(totals["flagged_episodes"], pa.float64()), episodes),
        "hours": pc.divide(totals["recorded_seconds"], 3600.0),
        "bytes": totals["bytes"],
    }
    table = pa.table(columns)
    metadata = {
        "robolake.report": "contributions",
        "since": period.since.isoformat(),
        "until": "" if period.until is None else period.until.isoformat(),
        "bucket": endpoints.s3_bucket,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    return table.replace_schema_metadata(metadata)


def render_table(table: pa.Table) -> str:
    """A fixed-width text rendering with a totals line, for a terminal."""
    header = f"{'organisation':<20} {'capture point':<20} {'episodes':>9} {'complete':>9} "
    header += f"{'flagged':>8} {'hours':>10} {'GB':>10}"
    lines = [header, "-" * len(header)]
    for row in table.to_pylist():
        lines.append(
            f"{row['organisation']:<20} {row['capture_point_id']:<20} {row['episodes']:>9} "
            f"{row['share_complete']:>9.1%} {row['share_flagged']:>8.1%} {row['hours']:>10.3f} "
            f"{row['bytes'] / 1e9:>10.4f}"
        )
    episodes = sum(table["episodes"].to_pylist())
    complete = sum(table["complete_episodes"].to_pylist())
    flagged = sum(table["flagged_episodes"].to_pylist())
    lines.append("-" * len(header))
    lines.append(
        f"{'total':<20} {table.num_rows:<20} {episodes:>9} "
        f"{(complete / episodes if episodes else 0):>9.1%} "
        f"{(flagged / episodes if episodes else 0):>8.1%} "
        f"{sum(table['hours'].to_pylist()):>10.3f} {sum(table['bytes'].to_pylist()) / 1e9:>10.4f}"
    )
    return "\n".join(lines) + "\n"


def write_report(table: pa.Table, fmt: ReportFormat, output: Path | None, out: TextIO) -> None:
    """Write the report as CSV (file or ``out``), Parquet (file only) or a text table."""
    if fmt == "parquet":
        if output is None:
            raise ReportError("--format parquet needs --output PATH")
        pq.write_table(table, output)
        return
    if fmt == "csv":
        buffer = io.BytesIO()
        pacsv.write_csv(table, buffer)
        text = buffer.getvalue().decode()
    else:
        text = render_table(table)
    if output is None:
        out.write(text)
    else:
        output.write_text(text)
