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
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from robolake.dataset import episodes as dataset_episodes
from robolake.dataset.episodes import UNKNOWN_ORGANISATION, newest_rows, with_organisation
from robolake.endpoints import Endpoints

__all__ = [
    "COLUMNS",
    "UNKNOWN_ORGANISATION",
    "empty_index",
    "newest_rows",
    "organisations",
    "read_index",
    "recorded_seconds",
    "with_organisation",
]

log = logging.getLogger(__name__)

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
    return dataset_episodes.empty_index(COLUMNS)


def read_index(endpoints: Endpoints) -> pa.Table:
    """The newest index row of every episode in the bucket (:data:`COLUMNS`)."""
    return dataset_episodes.read_index(endpoints, columns=COLUMNS)


def organisations(registry_path: Path | None) -> dict[str, str]:
    """Device id -> organisation, from the device registry (newest enrolment wins).

    Unlike an ML reader's filter, an operator's count must not fail for want of the registry:
    without it every episode counts as :data:`UNKNOWN_ORGANISATION`.
    """
    if registry_path is not None and not registry_path.is_file():
        log.warning(
            "device registry %s not found; organisations are %r",
            registry_path,
            UNKNOWN_ORGANISATION,
        )
        return {}
    return dataset_episodes.organisations_from_registry(registry_path)


def recorded_seconds(table: pa.Table) -> pa.Array:
    """``ended_at - started_at`` of every row, in seconds (float64)."""
    started = pc.cast(table["started_at"], pa.int64())
    ended = pc.cast(table["ended_at"], pa.int64())
    return pc.divide(pc.cast(pc.subtract(ended, started), pa.float64()), 1e9)
