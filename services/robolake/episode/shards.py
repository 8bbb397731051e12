"""The Parquet shard contract: where the writer puts rows, in which layout, and the episodes index.

Like LeRobot's ``DEFAULT_DATA_PATH``, the on-storage layout is a handful of named constants, so
readers, the writer and the docs (``schemas/shards.md``) agree by construction.

- One shard family per stream type version (``shards/joint_state.v1/...``): a directory holds one
  schema, so ``pyarrow.dataset`` and DuckDB read it as one table; the date is a hive partition.
- The date is the UTC date of the episode id's UUIDv7 timestamp: known from the Kafka key alone,
  the same for every chunk of an episode.
- File names come from topic + partition + first offset, so a replay after a crash overwrites
  the same objects instead of duplicating rows.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable
from typing import Any, Final, Literal, get_args

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from robolake.episode.stream_types import StreamType
from robolake.episode.tables import TableSpec, load_table

#: Object key of a shard; ``stream_type`` is ``<name>.v<version>``, ``date`` is YYYY-MM-DD.
DEFAULT_SHARD_PATH: Final = (
    "shards/{stream_type}/date={date}/{topic}+{partition:03d}+{first_offset:019d}.parquet"
)
#: Object key of an episodes index file, written per writer batch that completes episodes.
DEFAULT_INDEX_PATH: Final = (
    "index/episodes/date={date}/{topic}+{partition:03d}+{first_offset:019d}.parquet"
)
#: Key prefixes of the two families of the bucket layout (readers list them; nothing else may).
SHARDS_PREFIX: Final = DEFAULT_SHARD_PATH.split("/", 1)[0]
INDEX_PREFIX: Final = "/".join(DEFAULT_INDEX_PATH.split("/")[:2])
#: Table description of the episodes index.
EPISODES_INDEX_TABLE: Final = "tables/episodes_index.v1.json"

#: Columns the writer puts before the stream type's own (which start with ``t_ns``).
KEY_COLUMNS: Final = ("episode_id", "capture_point_id", "stream", "seq")
#: A chunk's identity: the writer drops a second copy, comparing checksums to spot conflicts.
UNIQUE_KEY: Final = ("episode_id", "stream", "seq")
#: Row order inside a shard: one episode's streams one after another, each in time order.
#: A chunk's rows are already in ``t_ns`` order (the contract requires it), so this order is
#: the chunks' own rows laid end to end in (episode_id, stream, seq) order -- the writer sorts
#: chunks, never rows, and copies no media to do it (``concat_in_order``).
SORT_KEYS: Final = ("episode_id", "stream", "seq", "t_ns")

COMPRESSION: Final = "zstd"
COMPRESSION_LEVEL: Final = 3
#: A row group is the unit ML readers fetch; big enough for throughput from S3.
TARGET_ROW_GROUP_BYTES: Final = 64 * 1024 * 1024
#: Rotate a shard file when it reaches this size (before compression), avoiding small files.
TARGET_FILE_BYTES: Final = 512 * 1024 * 1024

QualityFlag = Literal[
    "missing_chunks",
    "row_count_mismatch",
    "empty_stream",
    "conflicting_duplicate",
    "dead_lettered_chunks",
    "rate_off_nominal",
    "no_success_label",
]
#: Closed set of quality flags of the episodes index (meanings in schemas/shards.md).
QUALITY_FLAGS: Final[tuple[QualityFlag, ...]] = get_args(QualityFlag)


def shard_path(
    stream_type: StreamType, date: dt.date, topic: str, partition: int, first_offset: int
) -> str:
    """Object key of the shard starting at ``first_offset`` of ``topic``/``partition``."""
    return DEFAULT_SHARD_PATH.format(
        stream_type=stream_type.key,
        date=date.isoformat(),
        topic=topic,
        partition=partition,
        first_offset=first_offset,
    )


def index_path(date: dt.date, topic: str, partition: int, first_offset: int) -> str:
    """Object key of an episodes index file."""
    return DEFAULT_INDEX_PATH.format(
        date=date.isoformat(), topic=topic, partition=partition, first_offset=first_offset
    )


def shard_schema(stream_type: StreamType) -> pa.Schema:
    """Columns of a shard of ``stream_type``: key columns, then the type's fields with docs."""
    key_fields = [
        pa.field("episode_id", pa.string(), nullable=False),
        pa.field("capture_point_id", pa.string(), nullable=False),
        pa.field("stream", pa.string(), nullable=False),
        pa.field("seq", pa.int64(), nullable=False),
    ]
    return pa.schema(key_fields + list(stream_type.schema), metadata=stream_type.schema.metadata)


def to_shard_rows(
    chunk: pa.Table,
    stream_type: StreamType,
    *,
    episode_id: str,
    capture_point_id: str,
    stream: str,
    seq: int,
) -> pa.Table:
    """A decoded chunk with the key columns prepended, ready to concatenate into a shard."""
    n = chunk.num_rows
    keys = [
        pa.repeat(pa.scalar(episode_id, pa.string()), n),
        pa.repeat(pa.scalar(capture_point_id, pa.string()), n),
        pa.repeat(pa.scalar(stream, pa.string()), n),
        pa.repeat(pa.scalar(seq, pa.int64()), n),
    ]
    return pa.Table.from_arrays(keys + list(chunk.columns), schema=shard_schema(stream_type))


def concat_in_order(chunks: Iterable[tuple[tuple[str, str, int], pa.Table]]) -> pa.Table:
    """Shard rows (from :func:`to_shard_rows`) keyed by (episode_id, stream, seq), as one table
    in :data:`SORT_KEYS` order.

    Zero-copy: the chunks are ordered, not their rows. Sorting rows instead (``take``) copied
    every camera frame once or twice and was the writer's largest cost (see docs/capacity.md).
    """
    return pa.concat_tables([table for _, table in sorted(chunks, key=lambda item: item[0])])


def sort_shard(table: pa.Table) -> pa.Table:
    """Rows of any shard-shaped table in :data:`SORT_KEYS` order (copies; for tools and tests).

    The chunks are combined first: pyarrow's ``take`` over hundreds of chunks of large binary
    values was ~40x slower than over one chunk (1.9 s against 0.05 s for 520 MB of camera
    frames, pyarrow 26).
    """
    table = table.combine_chunks()
    return table.take(pc.sort_indices(table, sort_keys=[(k, "ascending") for k in SORT_KEYS]))


def parquet_write_options(schema: pa.Schema) -> dict[str, Any]:
    """Keyword arguments for ``pyarrow.parquet.ParquetWriter``/``write_table`` of a shard.

    Encoded media (binary columns) get neither dictionaries nor statistics: both cost space and
    time and help no query.
    """
    plain = [f.name for f in schema if not pa.types.is_binary(f.type)]
    return {
        "compression": COMPRESSION,
        "compression_level": COMPRESSION_LEVEL,
        "use_dictionary": plain,
        "write_statistics": plain,
        "sorting_columns": pq.SortingColumn.from_ordering(
            schema, [(key, "ascending") for key in SORT_KEYS if key in schema.names]
        ),
    }


def rows_per_row_group(average_row_bytes: float) -> int:
    """Rows that fill :data:`TARGET_ROW_GROUP_BYTES` at the given average row size."""
    return max(1, int(TARGET_ROW_GROUP_BYTES // max(average_row_bytes, 1.0)))


def lerobot_renames(stream_type: StreamType) -> dict[str, str]:
    """Field -> LeRobot v3 column for the fields of ``stream_type`` that map to one."""
    return {f.name: f.lerobot for f in stream_type.fields if f.lerobot is not None}


@functools.cache
def episodes_index() -> TableSpec:
    """The episodes index table description, loaded once."""
    return load_table(EPISODES_INDEX_TABLE)


def apportion(size: int, rows: dict[str, int]) -> dict[str, int]:
    """Split ``size`` bytes by row counts; the parts sum to ``size`` exactly.

    How a shard file's bytes are attributed to the episodes in it (the writer's
    ``stored_bytes`` of an index row, the exporter's fallback for rows without it): rows of one
    file are of one stream type and of similar size, so the row share is a fair byte share.

    Largest remainder: every episode gets the floor of its share, and the bytes left over go one
    each to the largest remainders (ties broken by episode id, so the split is deterministic).
    """
    total = sum(rows.values())
    if total <= 0:
        return {}
    parts = {episode: size * count // total for episode, count in rows.items()}
    left = size - sum(parts.values())
    by_remainder = sorted(rows, key=lambda e: (-(size * rows[e] % total), e))
    for episode in by_remainder[:left]:
        parts[episode] += 1
    return parts
