"""Finding episodes: the newest index row per episode, filtered by what ML teams select on.

The index may hold several rows per episode (a late chunk re-indexes it); ``schemas/shards.md``
says the newest ``indexed_at`` wins, so every filter here runs *after* that reduction -- filtering
first could pick an older row that matches while the episode's current row does not.

The organisation is in the index: the collector stamps the organisation of the device's token
into the records and the writer keeps it in the episode's row, so readers never open the
collectors' device registry (a secrets file). Rows written before that have a null
``organisation`` (files written before it lack the column); for those alone
:func:`legacy_organisations` -- the legacy fallback, the one place a reader touches the registry --
asks the registry what the device's organisation is now.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import (
    AlwaysTrue,
    And,
    BooleanExpression,
    GreaterThanOrEqual,
    In,
    LessThan,
    Reference,
)
from pyiceberg.expressions.literals import literal

from robolake.dataset.errors import DatasetError
from robolake.dataset.storage import Snapshots, episodes_index, has_index, uses_tables
from robolake.devices.registry import DeviceRegistry
from robolake.endpoints import Endpoints
from robolake.episode.ids import episode_date
from robolake.episode.shards import QUALITY_FLAGS
from robolake.episode.shards import episodes_index as index_description
from robolake.lake import layout as lake_layout

log = logging.getLogger(__name__)

#: Index columns too large to read when only listing (the manifest is read per episode).
HEAVY_COLUMNS: Final = ("manifest_json",)
#: The organisation of an episode whose device the registry does not know.
UNKNOWN_ORGANISATION: Final = "unknown"


@dataclass(frozen=True)
class EpisodeFilter:
    """Which episodes to select; every given criterion must hold (empty tuples select all).

    ``task`` matches as a case-insensitive substring of the instruction. ``started_from`` is
    inclusive and ``started_before`` exclusive, both compared with ``started_at`` (naive
    datetimes are taken as UTC). ``with_flags`` requires every listed quality flag,
    ``without_flags`` excludes episodes with any of them, and ``clean`` asks for none at all.
    """

    scenes: tuple[str, ...] = ()
    task: str | None = None
    robot_types: tuple[str, ...] = ()
    capture_points: tuple[str, ...] = ()
    organisations: tuple[str, ...] = ()
    episode_ids: tuple[str, ...] = ()
    started_from: dt.datetime | None = None
    started_before: dt.datetime | None = None
    complete: bool | None = None
    with_flags: tuple[str, ...] = ()
    without_flags: tuple[str, ...] = ()
    clean: bool = False

    def __post_init__(self) -> None:
        unknown = sorted((set(self.with_flags) | set(self.without_flags)) - set(QUALITY_FLAGS))
        if unknown:
            raise DatasetError(
                f"unknown quality flag(s) {', '.join(unknown)}; known: {', '.join(QUALITY_FLAGS)}"
            )


@dataclass(frozen=True)
class StreamInfo:
    """What the index says about one declared stream of an episode."""

    name: str
    type: str
    type_version: int
    rows: int
    chunks: int
    first_t_ns: int | None
    last_t_ns: int | None

    @property
    def stream_type_key(self) -> str:
        """``<type>.v<version>``, the shard directory holding the stream's rows."""
        return f"{self.type}.v{self.type_version}"


@dataclass(frozen=True)
class EpisodeInfo:
    """One episode as the index describes it (its current row)."""

    episode_id: str
    capture_point_id: str
    device_id: str
    organisation: str
    robot_type: str
    scene: str
    task: str
    operator: str
    started_at: dt.datetime
    ended_at: dt.datetime
    tags: tuple[str, ...]
    complete: bool
    quality_flags: tuple[str, ...]
    streams: tuple[StreamInfo, ...]
    shard_files: tuple[str, ...] = field(repr=False)
    indexed_at: dt.datetime = field(repr=False)

    @property
    def started_at_ns(self) -> int:
        """``started_at`` in nanoseconds since the epoch."""
        return _to_ns(self.started_at)

    @property
    def ended_at_ns(self) -> int:
        """``ended_at`` in nanoseconds since the epoch."""
        return _to_ns(self.ended_at)

    def stream(self, name: str) -> StreamInfo:
        """The stream called ``name``; a :class:`DatasetError` naming the declared ones if none."""
        for info in self.streams:
            if info.name == name:
                return info
        declared = ", ".join(s.name for s in self.streams)
        raise DatasetError(f"episode {self.episode_id} has no stream {name!r} (has: {declared})")

    def shard_files_of(self, stream_type_key: str) -> list[str]:
        """The shard files of one stream type (``joint_state.v1``) holding this episode's rows:
        objects of the bucket layout, or data files of the type's table where they were first
        written."""
        prefix = f"shards/{stream_type_key}/"
        table = f"/{lake_layout.shard_table(stream_type_key)}/data/"
        return [
            key
            for key in self.shard_files
            if key.startswith(prefix)
            or (key.startswith(f"{lake_layout.LAKE_PREFIX}/") and table in key)
        ]


def _to_ns(value: dt.datetime) -> int:
    delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


#: Where the legacy fallback finds organisations: a device id → organisation map already read
#: (tests, DataLoader workers), or the device registry file, opened only if a row needs it.
LegacySource = Mapping[str, str] | Path | None


def legacy_organisations(device_ids: Collection[str], source: LegacySource) -> dict[str, str]:
    """LEGACY FALLBACK: the organisations of devices whose index rows predate the column.

    Index rows written before the collector stamped the organisation have none; this is the one
    function through which readers and reports still consult the collectors' device registry
    for them (the newest enrolment of a device wins), and it is called only for such rows. Its
    answer is the device's organisation *now*, not at upload: moving a device to another
    organisation in the registry moves these old episodes too, which rows carrying the column
    never do. Delete it once no index file without the column is left (re-index, or let them
    age out).

    Never fails a read for want of the registry: without one, or for a device it does not know,
    the row keeps :data:`UNKNOWN_ORGANISATION` (and a warning says how many rows that is).
    """
    if not device_ids:
        return {}
    if isinstance(source, Mapping):
        return {d: source[d] for d in device_ids if d in source}
    if source is None or not source.is_file():
        log.warning(
            "%d device(s) have index rows without an organisation (written before the collector "
            "stamped it) and %s; they count as %r -- pass --devices-file "
            "(ROBOLAKE_DEVICES_FILE) to attribute them",
            len(device_ids),
            "no device registry was given" if source is None else f"{source} does not exist",
            UNKNOWN_ORGANISATION,
        )
        return {}
    wanted = set(device_ids)
    newest: dict[str, tuple[float, str]] = {}
    for device in DeviceRegistry(source).devices():
        if device.device_id not in wanted:
            continue
        seen = newest.get(device.device_id)
        if seen is None or device.created_at >= seen[0]:
            newest[device.device_id] = (device.created_at, device.organisation)
    return {device_id: organisation for device_id, (_, organisation) in newest.items()}


def empty_index(columns: Sequence[str] | None = None) -> pa.Table:
    """An index table with no rows."""
    table = index_description().schema.empty_table()
    return table.select(list(columns)) if columns is not None else table


def newest_rows(table: pa.Table) -> pa.Table:
    """One row per ``episode_id``: the one with the newest ``indexed_at``, sorted by id."""
    if table.num_rows == 0:
        return table
    ordered = table.sort_by([("episode_id", "ascending"), ("indexed_at", "descending")])
    ids = ordered["episode_id"].combine_chunks()
    first = pa.array([True])
    if len(ids) > 1:
        changed = pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1))
        first = pa.concat_arrays([first, changed])
    return ordered.filter(first)


def read_index(
    endpoints: Endpoints,
    *,
    with_manifest: bool = False,
    columns: Sequence[str] | None = None,
    snapshots: Snapshots | None = None,
    criteria: EpisodeFilter | None = None,
) -> pa.Table:
    """The current (newest) index row of every episode -- of every episode that may meet
    ``criteria``, if given: :func:`filter_index` still has to be applied.

    ``columns`` narrows what is read (it must include ``episode_id`` and ``indexed_at``);
    ``snapshots`` pins the tables' snapshots (:func:`robolake.dataset.storage.current_snapshots`).
    From the tables, ``criteria`` is pushed down (:func:`index_pushdown`): only the files whose
    partitions and statistics can hold a match are read, so a selective query costs what its
    answer does, not what the index holds.
    """
    if columns is not None:
        columns = list(columns)
    else:
        columns = [
            name
            for name in index_description().schema.names
            if with_manifest or name not in HEAVY_COLUMNS
        ]
    pushed = index_pushdown(criteria) if criteria is not None else None
    if pushed is not None and uses_tables(endpoints):
        return _pushed_down(endpoints, columns, snapshots, *pushed)
    if not has_index(endpoints, snapshots=snapshots):
        return empty_index(columns)
    table = episodes_index(endpoints, snapshots=snapshots).to_table(columns=columns)
    return newest_rows(table)


def index_pushdown(criteria: EpisodeFilter) -> tuple[BooleanExpression, pc.Expression] | None:
    """What of ``criteria`` can be decided before the newest row per episode is chosen: an
    Iceberg expression for planning and a pyarrow one for rows, over the manifest's fields
    (scene, task, robot type, capture point, id, start). None when nothing can be.

    They only find *candidates*: the newest-row rule is applied to every row of each candidate
    (:func:`_pushed_down`), so an episode whose older row matched and newest does not is still
    dropped by :func:`filter_index`. Completeness, flags and organisations change between
    rows or need the legacy fallback, and are never pushed down.
    """
    planned: list[BooleanExpression] = []
    rows: list[pc.Expression] = []
    in_sets = {
        "scene": criteria.scenes,
        "robot_type": criteria.robot_types,
        "capture_point_id": criteria.capture_points,
        "episode_id": criteria.episode_ids,
    }
    for column, values in in_sets.items():
        if values:
            planned.append(_one_of(column, values))
            rows.append(pc.field(column).isin(list(values)))
    if criteria.started_from is not None:
        since = _utc(criteria.started_from)
        planned.append(GreaterThanOrEqual(term=Reference("started_at"), value=literal(since)))
        rows.append(pc.field("started_at") >= _timestamp(since))
    if criteria.started_before is not None:
        before = _utc(criteria.started_before)
        planned.append(LessThan(term=Reference("started_at"), value=literal(before)))
        rows.append(pc.field("started_at") < _timestamp(before))
    if criteria.task:
        rows.append(pc.match_substring(pc.field("task"), criteria.task, ignore_case=True))
    if not rows:
        return None
    plan: BooleanExpression = AlwaysTrue()
    for expression in planned:
        plan = And(plan, expression)
    condition = rows[0]
    for expression in rows[1:]:
        condition = condition & expression
    return plan, condition


def _one_of(column: str, values: Collection[str]) -> BooleanExpression:
    return In(term=Reference(column), values={literal(v) for v in values})


def _pushed_down(
    endpoints: Endpoints,
    columns: list[str],
    snapshots: Snapshots | None,
    plan: BooleanExpression,
    condition: pc.Expression,
) -> pa.Table:
    """Newest rows of the candidates of a pushed-down filter: first the ids of rows meeting
    it (pruned files only), then every row of those episodes (pruned to their dates and id
    bounds), of which the newest per episode is kept."""
    found = episodes_index(endpoints, snapshots=snapshots, row_filter=plan).to_table(
        columns=["episode_id"], filter=condition
    )
    ids = sorted(set(found["episode_id"].to_pylist()))
    if not ids:
        return empty_index(columns)
    candidates = _one_of("episode_id", ids)
    with contextlib.suppress(ValueError):  # an id that is not a UUIDv7 has no date to prune by
        candidates = And(_one_of("date", {episode_date(i).isoformat() for i in ids}), candidates)
    rows = episodes_index(endpoints, snapshots=snapshots, row_filter=candidates).to_table(
        columns=columns, filter=pc.field("episode_id").isin(ids)
    )
    return newest_rows(rows)


def with_organisation(table: pa.Table, legacy: LegacySource = None) -> pa.Table:
    """Index rows with an ``organisation`` that is never null, for filters and group-bys.

    A row's own ``organisation`` (stamped at ingest) always wins; only rows without one go to
    :func:`legacy_organisations` with ``legacy``, and the registry is not opened when every row
    has one. The column keeps its place in the index schema (appended if ``table`` lacks it).
    """
    if "organisation" in table.column_names:
        stamped = table["organisation"].to_pylist()
    else:
        stamped = [None] * table.num_rows
    devices = table["device_id"].to_pylist()
    missing = {str(d) for d, o in zip(devices, stamped, strict=True) if o is None}
    found = legacy_organisations(missing, legacy)
    names = [
        o if o is not None else found.get(str(d), UNKNOWN_ORGANISATION)
        for d, o in zip(devices, stamped, strict=True)
    ]
    column = pa.array(names, type=pa.string())
    if "organisation" in table.column_names:
        return table.set_column(
            table.schema.get_field_index("organisation"), "organisation", column
        )
    return table.append_column("organisation", column)


def _timestamp(value: dt.datetime) -> pa.Scalar:
    return pa.scalar(_utc(value), type=pa.timestamp("ns", tz="UTC"))


def filter_index(table: pa.Table, criteria: EpisodeFilter) -> pa.Table:
    """Rows of ``table`` (current index rows, after :func:`with_organisation`) meeting ``criteria``.

    One vectorised mask over the table; list-valued criteria use ``is_in``, flags use the
    ``quality_flags`` lists, all in pyarrow compute.
    """
    mask = pa.array([True] * table.num_rows, pa.bool_())
    in_sets = {
        "scene": criteria.scenes,
        "robot_type": criteria.robot_types,
        "capture_point_id": criteria.capture_points,
        "organisation": criteria.organisations,
        "episode_id": criteria.episode_ids,
    }
    for column, values in in_sets.items():
        if values:
            mask = pc.and_(mask, pc.is_in(table[column], pa.array(values, pa.string())))
    if criteria.task:
        found = pc.match_substring(table["task"], criteria.task, ignore_case=True)
        mask = pc.and_(mask, found)
    if criteria.started_from is not None:
        since = _timestamp(criteria.started_from)
        mask = pc.and_(mask, pc.greater_equal(table["started_at"], since))
    if criteria.started_before is not None:
        before = _timestamp(criteria.started_before)
        mask = pc.and_(mask, pc.less(table["started_at"], before))
    if criteria.complete is not None:
        wanted = table["complete"] if criteria.complete else pc.invert(table["complete"])
        mask = pc.and_(mask, wanted)
    flags = table["quality_flags"]
    if criteria.clean:
        mask = pc.and_(mask, pc.equal(pc.list_value_length(flags), 0))
    for flag in criteria.with_flags:
        mask = pc.and_(mask, _has_flag(flags, flag))
    for flag in criteria.without_flags:
        mask = pc.and_(mask, pc.invert(_has_flag(flags, flag)))
    return table.filter(mask)


def _has_flag(flags: pa.ChunkedArray, flag: str) -> pa.Array:
    """Per row: whether its ``quality_flags`` list contains ``flag``."""
    combined = flags.combine_chunks()
    matches = pc.equal(pc.list_flatten(combined), flag).to_numpy(zero_copy_only=False)
    rows = pc.list_parent_indices(combined).to_numpy()
    present = np.zeros(len(combined), dtype=bool)
    present[rows[matches.astype(bool)]] = True
    return pa.array(present, pa.bool_())


def _stream_infos(value: list[dict[str, Any]] | None) -> tuple[StreamInfo, ...]:
    return tuple(
        StreamInfo(
            name=s["name"],
            type=s["type"],
            type_version=int(s["type_version"]),
            rows=int(s["rows"] or 0),
            chunks=int(s["chunks"] or 0),
            first_t_ns=s["first_t_ns"],
            last_t_ns=s["last_t_ns"],
        )
        for s in value or []
    )


def episode_infos(table: pa.Table) -> list[EpisodeInfo]:
    """Index rows (with ``organisation``) as :class:`EpisodeInfo`, in table order."""
    infos = []
    for row in table.to_pylist():
        infos.append(
            EpisodeInfo(
                episode_id=row["episode_id"],
                capture_point_id=row["capture_point_id"],
                device_id=row["device_id"],
                organisation=row.get("organisation") or UNKNOWN_ORGANISATION,
                robot_type=row["robot_type"],
                scene=row["scene"],
                task=row["task"],
                operator=row["operator"],
                started_at=_utc(row["started_at"]),
                ended_at=_utc(row["ended_at"]),
                tags=tuple(row["tags"] or ()),
                complete=bool(row["complete"]),
                quality_flags=tuple(row["quality_flags"] or ()),
                streams=_stream_infos(row["streams"]),
                shard_files=tuple(row["shard_files"] or ()),
                indexed_at=_utc(row["indexed_at"]),
            )
        )
    return infos


def manifest_document(table: pa.Table) -> dict[str, Any]:
    """The manifest JSON of the single row of ``table`` (read with ``manifest_json``)."""
    text = table["manifest_json"][0].as_py()
    document: dict[str, Any] = json.loads(text)
    return document
