"""The episodes index as operators count it: the newest row per episode, with its organisation.

The index may hold several rows per episode (a late chunk re-indexes it); ``schemas/shards.md``
says the newest ``indexed_at`` wins, and every count here follows that rule, so the exporter, the
contribution report and an ML reader's DuckDB query agree.

The organisation is in the index (stamped by the collector from the device's token, kept by the
writer), so counts group by what was true at upload and need no device registry. Rows written
before that have none; :func:`~robolake.dataset.episodes.legacy_organisations` -- the legacy
fallback -- gives them the registry's current organisation of their device, or
:data:`UNKNOWN_ORGANISATION` without a registry (docs/operations.md).
"""

from __future__ import annotations

import logging
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from robolake.dataset import episodes as dataset_episodes
from robolake.dataset.episodes import (
    UNKNOWN_ORGANISATION,
    LegacySource,
    newest_rows,
    with_organisation,
)
from robolake.endpoints import Endpoints

__all__ = [
    "COLUMNS",
    "UNKNOWN_ORGANISATION",
    "LegacySource",
    "empty_index",
    "newest_rows",
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
    "organisation",
    "stored_bytes",
)


def empty_index() -> pa.Table:
    """A table with :data:`COLUMNS` of the index schema and no rows."""
    return dataset_episodes.empty_index(COLUMNS)


def read_index(endpoints: Endpoints) -> pa.Table:
    """The newest index row of every episode in the bucket (:data:`COLUMNS`)."""
    return dataset_episodes.read_index(endpoints, columns=COLUMNS)


def recorded_seconds(table: pa.Table) -> pa.Array:
    """``ended_at - started_at`` of every row, in seconds (float64)."""
    started = pc.cast(table["started_at"], pa.int64())
    ended = pc.cast(table["ended_at"], pa.int64())
    return pc.divide(pc.cast(pc.subtract(ended, started), pa.float64()), 1e9)
