"""Shard paths, the shard layout on disk, the episodes index and the LeRobot mapping."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from robolake.episode.chunks import decode_chunk
from robolake.episode.ids import episode_date
from robolake.episode.shards import (
    SORT_KEYS,
    concat_in_order,
    episodes_index,
    index_path,
    lerobot_renames,
    parquet_write_options,
    rows_per_row_group,
    shard_path,
    shard_schema,
    sort_shard,
    to_shard_rows,
)
from robolake.episode.stream_types import StreamTypeRegistry
from robolake.episode.synthetic import SyntheticEpisode
from robolake.episode.topics import CHUNK_TOPIC


def test_shard_path_is_deterministic_and_hive_partitioned(registry: StreamTypeRegistry) -> None:
    path = shard_path(registry.get("image", 1), dt.date(2026, 1, 5), CHUNK_TOPIC, 3, 1234)
    assert path == (
        "shards/image.v1/date=2026-01-05/robolake.chunks.v1+003+0000000000000001234.parquet"
    )
    later = shard_path(registry.get("image", 1), dt.date(2026, 1, 5), CHUNK_TOPIC, 3, 99999)
    assert sorted([later, path]) == [path, later]  # offsets sort as text
    assert index_path(dt.date(2026, 1, 5), CHUNK_TOPIC, 0, 7).startswith(
        "index/episodes/date=2026-01-05/"
    )


def test_shard_date_comes_from_the_episode_id(episode: SyntheticEpisode) -> None:
    started = dt.datetime.fromtimestamp(episode.manifest.started_at_ns // 10**9, tz=dt.UTC)
    assert episode_date(episode.manifest.episode_id) == started.date()


def _shard(episode: SyntheticEpisode, streams: list[str]) -> pa.Table:
    chunks = episode.chunks()
    parts = []
    for stream in streams:
        decl = episode.manifest.stream(stream)
        for seq, data in enumerate(chunks[stream]):
            parts.append(
                to_shard_rows(
                    decode_chunk(data),
                    decl.stream_type,
                    episode_id=episode.manifest.episode_id,
                    capture_point_id=episode.manifest.capture_point_id,
                    stream=stream,
                    seq=seq,
                )
            )
    return sort_shard(pa.concat_tables(parts))


def test_shard_rows_written_and_read_back(episode: SyntheticEpisode, tmp_path: Path) -> None:
    cameras = ["cam_head", "cam_wrist_left"]
    shard = _shard(episode, cameras)
    stream_type = episode.manifest.stream("cam_head").stream_type
    assert shard.schema.names[:5] == ["episode_id", "capture_point_id", "stream", "seq", "t_ns"]
    assert shard.num_rows == sum(episode.streams[c].num_rows for c in cameras)
    path = tmp_path / "shard.parquet"
    pq.write_table(shard, path, **parquet_write_options(shard.schema))
    back = pq.read_table(path)
    assert back.schema.equals(shard_schema(stream_type), check_metadata=False)
    assert back.equals(shard)
    metadata = pq.ParquetFile(path).metadata
    column = metadata.row_group(0).column(shard.schema.get_field_index("data"))
    assert column.compression == "ZSTD"
    assert column.statistics is None  # no statistics for encoded media
    sorting = metadata.row_group(0).sorting_columns
    assert [shard.schema.names[s.column_index] for s in sorting] == list(SORT_KEYS)
    keys = list(zip(*(back.column(k).to_pylist() for k in SORT_KEYS), strict=True))
    assert keys == sorted(keys)
    for camera in cameras:  # each stream in time order
        t = back.filter(pc.equal(back.column("stream"), camera)).column("t_ns").to_pylist()
        assert t == sorted(t)


def test_chunks_concatenated_in_order_equal_a_row_sort(episode: SyntheticEpisode) -> None:
    chunks = episode.chunks(64 * 1024)
    keyed = []
    for stream in ("cam_wrist_left", "cam_head"):  # two streams of one type: one shard
        decl = episode.manifest.stream(stream)
        for seq, data in enumerate(chunks[stream]):
            rows = to_shard_rows(
                decode_chunk(data),
                decl.stream_type,
                episode_id=episode.manifest.episode_id,
                capture_point_id=episode.manifest.capture_point_id,
                stream=stream,
                seq=seq,
            )
            keyed.append(((episode.manifest.episode_id, stream, seq), rows))
    keyed.reverse()  # arrival order must not matter
    ordered = concat_in_order(keyed)
    assert ordered.column("data").num_chunks == len(keyed)  # no copy: the chunks are the pieces
    assert ordered.equals(sort_shard(ordered))


def test_row_group_sizing() -> None:
    assert rows_per_row_group(64 * 1024) == 1024
    assert rows_per_row_group(0) >= 1


def test_episodes_index_has_the_issue_columns() -> None:
    schema = episodes_index().schema
    for name in (
        "episode_id",
        "scene",
        "task",
        "robot_type",
        "capture_point_id",
        "started_at",
        "shard_files",
        "complete",
        "quality_flags",
        "streams",
    ):
        assert name in schema.names, name
    stream = schema.field("streams").type.value_type
    assert {"rows", "first_t_ns", "last_t_ns"} <= {
        stream.field(i).name for i in range(stream.num_fields)
    }


def test_lerobot_names(registry: StreamTypeRegistry) -> None:
    assert lerobot_renames(registry.get("joint_state", 1))["position"] == "observation.state"
    assert lerobot_renames(registry.get("action", 1)) == {"action": "action"}
    assert lerobot_renames(registry.get("imu", 1)) == {}
