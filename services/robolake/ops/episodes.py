"""The episodes index as operators count it: the newest row per episode, with its organisation.

The index may hold several rows per episode (a late chunk re-indexes it); ``schemas/shards.md``
says the newest ``indexed_at`` wins, and every count here follows that rule, so the exporter, the
contribution report and an ML reader's DuckDB query agree.

The organisation is not in the index: the collector knows it from the device registry
(``robolake.collector.devices``) but stamps only device and capture point into the records. We
join on ``device_id`` with the registry (the newest enrolment of a device wins) rather than widen
the published index contract; a device that is not in the registry counts as
:data:`UNKNOWN_ORGANISATION`. The consequence, documented in docs/operations.md: moving a device
to another organisation in the registry moves its past episodes too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from robolake.collector.devices import DeviceRegistry
from robolake.dataset.storage import INDEX_PREFIX, episodes_index, s3_filesystem
from robolake.endpoints import Endpoints
from robolake.episode.shards import episodes_index as index_description

log = logging.getLogger(__name__)

#: The organisation of episodes whose device the registry does not know.
UNKNOWN_ORGANISATION: Final = "unknown"

#: The index columns operators need (``streams`` and ``manifest_json`` are left on S3).
COLUMNS: Final = (
    "episode_id",
    "capture_point_id",
    "device_id",
    "scene",
    "started_at",
    "ended_at",
    "complete",
    "quality_flags",
    "shard_files",
    "indexed_at",
)


def empty_index() -> pa.Table:
    """A table with :data:`COLUMNS` of the index schema and no rows."""
    schema = index_description().schema
    return schema.empty_table().select(list(COLUMNS))


def has_index(endpoints: Endpoints) -> bool:
    """Whether the bucket holds any index file (pyarrow cannot open a dataset of nothing)."""
    fs = s3_filesystem(endpoints)
    selector = pafs.FileSelector(
        f"{endpoints.s3_bucket}/{INDEX_PREFIX}", allow_not_found=True, recursive=True
    )
    return any(info.type == pafs.FileType.File for info in fs.get_file_info(selector))


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


def read_index(endpoints: Endpoints) -> pa.Table:
    """The newest index row of every episode in the bucket (:data:`COLUMNS`)."""
    if not has_index(endpoints):
        return empty_index()
    table = episodes_index(endpoints).to_table(columns=list(COLUMNS))
    return newest_rows(table)


def organisations(registry_path: Path | None) -> dict[str, str]:
    """Device id -> organisation, from the device registry (newest enrolment wins)."""
    if registry_path is None:
        return {}
    if not registry_path.is_file():
        log.warning("device registry %s not found; organisations are %r", registry_path,
                    UNKNOWN_ORGANISATION)  # fmt: skip
        return {}
    newest: dict[str, tuple[float, str]] = {}
    for device in DeviceRegistry(registry_path).devices():
        seen = newest.get(device.device_id)
        if seen is None or device.created_at >= seen[0]:
            newest[device.device_id] = (device.created_at, device.organisation)
    return {device_id: organisation for device_id, (_, organisation) in newest.items()}


def with_organisation(table: pa.Table, by_device: Mapping[str, str]) -> pa.Table:
    """Append an ``organisation`` column looked up by ``device_id``."""
    devices = table["device_id"].to_pylist()
    names = [by_device.get(str(d), UNKNOWN_ORGANISATION) for d in devices]
    return table.append_column("organisation", pa.array(names, type=pa.string()))


def recorded_seconds(table: pa.Table) -> pa.Array:
    """``ended_at - started_at`` of every row, in seconds (float64)."""
    started = pc.cast(table["started_at"], pa.int64())
    ended = pc.cast(table["ended_at"], pa.int64())
    return pc.divide(pc.cast(pc.subtract(ended, started), pa.float64()), 1e9)
