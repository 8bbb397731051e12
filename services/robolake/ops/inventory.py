"""One scan of the bucket: what the dataset holds, per episode and in total.

Both the exporter and the contribution report count from the same per-episode table (newest
index row, organisation, recorded seconds, attributed shard bytes, flags), through
:func:`aggregate`, so a dashboard and a voucher claim cannot disagree about what an episode is
worth.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from robolake.dataset.storage import (
    Manifest,
    s3_filesystem,
    shard_manifests,
    stored_totals,
    uses_tables,
)
from robolake.endpoints import Endpoints
from robolake.episode.shards import INDEX_PREFIX, SHARDS_PREFIX
from robolake.ops.attribution import ShardAttribution, StoredFile, is_shard, list_files
from robolake.ops.episodes import LegacySource, read_index, recorded_seconds, with_organisation

log = logging.getLogger(__name__)

#: Per-group totals :func:`aggregate` returns, after the group keys.
TOTALS: Final = (
    "episodes",
    "complete_episodes",
    "flagged_episodes",
    "recorded_seconds",
    "bytes",
    "last_ended_at",
)


@dataclass(frozen=True)
class Inventory:
    """What one scan found."""

    #: Bytes of every table's data files (``shards/`` and ``index/`` in the bucket layout).
    stored_bytes: int
    shard_files: int
    #: Shard bytes of rows whose episode has no index row.
    unindexed_bytes: int
    #: One row per indexed episode: the index columns plus ``organisation``,
    #: ``recorded_seconds``, ``bytes`` and ``flagged``.
    episodes: pa.Table


def enrich(
    index: pa.Table, bytes_by_episode: Mapping[str, int], legacy: LegacySource = None
) -> pa.Table:
    """Fill ``organisation`` (``legacy`` only for rows without one), add ``recorded_seconds``,
    ``bytes`` and ``flagged`` to index rows."""
    table = with_organisation(index, legacy)
    table = table.append_column("recorded_seconds", recorded_seconds(table))
    sizes = [bytes_by_episode.get(str(e), 0) for e in table["episode_id"].to_pylist()]
    table = table.append_column("bytes", pa.array(sizes, type=pa.int64()))
    flagged = pc.greater(pc.fill_null(pc.list_value_length(table["quality_flags"]), 0), 0)
    return table.append_column("flagged", flagged)


def stored_bytes(index: pa.Table) -> dict[str, int]:
    """Bytes per episode from the index rows that carry ``stored_bytes`` (the writer's share of
    the files it wrote; rows without it are left out)."""
    return {
        str(episode_id): int(size)
        for episode_id, size in zip(
            index["episode_id"].to_pylist(), index["stored_bytes"].to_pylist(), strict=True
        )
        if size is not None
    }


def scan(
    endpoints: Endpoints, attribution: ShardAttribution, legacy: LegacySource = None
) -> Inventory:
    """Attribute shard bytes, read the index: the dataset as it is now.

    From the tables, every count comes from the snapshots' summaries and the index: an
    episode's bytes are its index row's ``stored_bytes`` (the writer's share of each file it
    wrote), so a scan costs the number of tables and episodes, never of data files -- the
    first one too. Only while some index row lacks ``stored_bytes`` (written before the field)
    are the shard files apportioned here, from the manifests (each new manifest once). Only
    the bucket layout is listed.
    """
    index = read_index(endpoints)
    if uses_tables(endpoints) and index["stored_bytes"].null_count == 0:
        bytes_by_episode = stored_bytes(index)
        shard_bytes, shard_files = stored_totals(endpoints, shards_only=True)
        stored, _ = stored_totals(endpoints)
        episodes = enrich(index, bytes_by_episode, legacy)
        # Bytes at ingest: compaction (which recompresses closed days, usually smaller) makes
        # this an estimate that reads low by what it saved; it never goes below 0.
        unindexed = max(0, shard_bytes - sum(bytes_by_episode.values()))
        return Inventory(stored, shard_files, unindexed, episodes)
    if uses_tables(endpoints):
        # Keys are never reused in the tables, so (key, size) identifies a file's content;
        # manifests never change, so only new ones are read (O(manifests), not O(files)).
        bytes_by_episode, shard_files = attribution.bytes_by_manifest(
            {m.path: functools.partial(_stored, m) for m in shard_manifests(endpoints)}
        )
        stored, _ = stored_totals(endpoints)
    else:
        fs = s3_filesystem(endpoints)
        bucket = endpoints.s3_bucket
        shard_objects = list_files(fs, bucket, SHARDS_PREFIX)
        index_objects = list_files(fs, bucket, INDEX_PREFIX.split("/")[0])
        shards = [f for f in shard_objects if is_shard(f.key)]
        stored = sum(f.size for f in (*shard_objects, *index_objects))
        bytes_by_episode = attribution.bytes_by_episode(shards)
        shard_files = len(shards)
    episodes = enrich(index, bytes_by_episode, legacy)
    attributed = int(pc.sum(episodes["bytes"]).as_py() or 0)
    return Inventory(
        stored_bytes=stored,
        shard_files=shard_files,
        unindexed_bytes=sum(bytes_by_episode.values()) - attributed,
        episodes=episodes,
    )


def _stored(manifest: Manifest) -> list[StoredFile]:
    return [StoredFile(f.key, f.size, 0) for f in manifest.read()]


def aggregate(episodes: pa.Table, keys: Sequence[str]) -> pa.Table:
    """Totals of :data:`TOTALS` per group of ``keys``, sorted by the keys."""
    table = episodes.select([*keys, "episode_id", "recorded_seconds", "bytes", "ended_at"])
    table = table.append_column("complete_i", pc.cast(episodes["complete"], pa.int64()))
    table = table.append_column("flagged_i", pc.cast(episodes["flagged"], pa.int64()))
    table = table.set_column(
        table.schema.get_field_index("ended_at"),
        "ended_at",
        pc.cast(table["ended_at"], pa.int64()),
    )
    grouped = table.group_by(list(keys), use_threads=False).aggregate(
        [
            ("episode_id", "count"),
            ("complete_i", "sum"),
            ("flagged_i", "sum"),
            ("recorded_seconds", "sum"),
            ("bytes", "sum"),
            ("ended_at", "max"),
        ]
    )
    renamed = grouped.rename_columns(
        {
            "episode_id_count": "episodes",
            "complete_i_sum": "complete_episodes",
            "flagged_i_sum": "flagged_episodes",
            "recorded_seconds_sum": "recorded_seconds",
            "bytes_sum": "bytes",
            "ended_at_max": "last_ended_at",
        }
    )
    ordered = renamed.select([*keys, *TOTALS])
    return ordered.sort_by([(key, "ascending") for key in keys]) if keys else ordered
