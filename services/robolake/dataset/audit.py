"""Accounting of the dataset against what devices were told: found, missing, stored twice.

"Acknowledged data is never lost and never duplicated in the shards" is checked here, for the
demo and the end-to-end tests: every acknowledged chunk key (episode_id, stream, seq) must be in
the shards, and no row — (episode_id, stream, seq, t_ns) — may be stored twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from robolake.dataset.storage import shards, stream_types
from robolake.endpoints import Endpoints

_KEYS = ["episode_id", "stream", "seq"]


@dataclass(frozen=True)
class ChunkAudit:
    """The result of comparing acknowledged chunks with the shards."""

    acknowledged: int
    found: int
    missing: int
    duplicated_rows: int
    shard_files: int
    shard_bytes: int

    @property
    def exact(self) -> bool:
        """Every acknowledged chunk stored, no row twice."""
        return self.missing == 0 and self.duplicated_rows == 0


def audit_chunks(endpoints: Endpoints, acknowledged: Iterable[tuple[str, str, int]]) -> ChunkAudit:
    """Compare acknowledged ``(episode_id, stream, seq)`` keys with every shard in the bucket."""
    keys = sorted(set(acknowledged))
    wanted = pa.table(
        {
            "episode_id": pa.array([k[0] for k in keys], pa.string()),
            "stream": pa.array([k[1] for k in keys], pa.string()),
            "seq": pa.array([k[2] for k in keys], pa.int64()),
        }
    )
    stored: list[pa.Table] = []
    files = size = duplicated = 0
    for stream_type in stream_types(endpoints):
        dataset = shards(endpoints, stream_type)
        fragments = list(dataset.get_fragments())
        files += len(fragments)
        size += sum(dataset.filesystem.get_file_info(f.path).size for f in fragments)
        table = dataset.to_table(columns=[*_KEYS, "t_ns"])
        if table.num_rows == 0:
            continue
        stored.append(table.group_by(_KEYS).aggregate([]).cast(wanted.schema))
        rows = table.group_by([*_KEYS, "t_ns"]).aggregate([([], "count_all")])
        duplicated += int(pc.sum(pc.subtract(rows["count_all"], 1)).as_py() or 0)
    found = 0
    if stored and keys:
        found = wanted.join(pa.concat_tables(stored), _KEYS, join_type="inner").num_rows
    return ChunkAudit(
        acknowledged=len(keys),
        found=found,
        missing=len(keys) - found,
        duplicated_rows=duplicated,
        shard_files=files,
        shard_bytes=size,
    )
