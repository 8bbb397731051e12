"""Export selected episodes as LeRobot v3.0 datasets, one per robot type and feature set.

LeRobot v3.0 on disk (the format is the contract; these constants are it, like LeRobot's own)::

    meta/info.json                 codebase_version "v3.0", fps, features, totals, path patterns
    meta/stats.json                dataset statistics per feature
    meta/tasks.parquet             task string (pandas index) -> task_index
    meta/episodes/chunk-000/file-000.parquet   one row per episode: length, tasks, where its
                                   rows and video frames are, per-episode stats/<feature>/<stat>
    data/chunk-XXX/file-XXX.parquet            one row per frame
    videos/<key>/chunk-XXX/file-XXX.mp4        one MP4 per camera, episodes back to back

How robolake maps to it: every episode is aligned to ``fps`` (:mod:`robolake.dataset.frames`);
fields with a ``lerobot`` name in their stream type become that column (``joint_state.position``
→ ``observation.state``, ``action.action`` → ``action``; a second stream of the same type gets a
``.<stream>`` suffix); other numeric streams become ``observation.<stream>.<field>``; cameras
become ``observation.images.<stream>`` videos; the task of a frame is the newest ``instruction``
event at or before it (the manifest's task before the first). Episodes whose features differ
(another robot type, joint count, camera set or resolution) go to another dataset: a LeRobot
dataset has one feature schema.

Statistics follow :mod:`robolake.dataset.feature_stats`: per episode from its frames, merged
exactly for count/min/max/mean/std, and quantiles recomputed from all frames (re-read from the
written data files one column at a time), never averaged. Camera statistics are per channel over
pixels (scaled to [0, 1]) of up to ``image_stat_frames`` evenly spaced, downsampled frames per
episode, stored channel-first (3, 1, 1) -- except ``count``, which is shape (1,) for every
feature, as LeRobot's ``lerobot-edit-dataset`` requires.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from robolake.dataset import feature_stats
from robolake.dataset.align import asof_indices
from robolake.dataset.episodes import EpisodeFilter, EpisodeInfo
from robolake.dataset.errors import DatasetError
from robolake.dataset.frames import episode_frames
from robolake.dataset.reader import RobolakeDataset
from robolake.dataset.video_encoding import DEFAULT_CODEC, Mp4Writer, decode_image
from robolake.episode.manifest import EpisodeManifest
from robolake.episode.shards import lerobot_renames

log = logging.getLogger(__name__)

CODEBASE_VERSION: Final = "v3.0"
INFO_PATH: Final = "meta/info.json"
STATS_PATH: Final = "meta/stats.json"
TASKS_PATH: Final = "meta/tasks.parquet"
CHUNK_FILE: Final = "chunk-{chunk_index:03d}/file-{file_index:03d}"
EPISODES_PATH: Final = "meta/episodes/" + CHUNK_FILE + ".parquet"
DATA_PATH: Final = "data/" + CHUNK_FILE + ".parquet"
VIDEO_PATH: Final = "videos/{video_key}/" + CHUNK_FILE + ".mp4"
#: Files per chunk directory, and the sizes at which a data or video file is rotated.
CHUNKS_SIZE: Final = 1000
DATA_FILE_MB: Final = 100
VIDEO_FILE_MB: Final = 200
#: Columns every LeRobot frame has besides its features.
FRAME_COLUMNS: Final = ("timestamp", "frame_index", "episode_index", "index", "task_index")
#: Stream types the export does not carry (depth maps would need a lossless video codec).
SKIPPED_TYPES: Final = frozenset({"event", "depth_image"})
_AXES: Final = {3: ["x", "y", "z"], 4: ["x", "y", "z", "w"]}


@dataclass(frozen=True)
class ExportOptions:
    """How to export. ``fps`` is the frame rate every stream is aligned to."""

    fps: int
    videos: bool = True
    codec: str = DEFAULT_CODEC
    data_file_mb: float = DATA_FILE_MB
    video_file_mb: float = VIDEO_FILE_MB
    image_stat_frames: int = 16


@dataclass(frozen=True)
class Feature:
    """One LeRobot feature and the aligned column it comes from."""

    key: str
    kind: Literal["vector", "video"]
    source: str
    shape: tuple[int, ...]
    names: tuple[str, ...] | None

    def info(self, fps: int, codec: str) -> dict[str, Any]:
        """The feature's entry in ``info.json``."""
        if self.kind == "vector":
            return {"dtype": "float32", "shape": list(self.shape), "names": _names(self.names)}
        height, width, channels = self.shape
        return {
            "dtype": "video",
            "shape": [height, width, channels],
            "names": ["height", "width", "channels"],
            "info": {
                "video.height": height,
                "video.width": width,
                "video.codec": "h264" if codec == "libx264" else codec,
                "video.pix_fmt": "yuv420p",
                "video.is_depth_map": False,
                "video.fps": fps,
                "video.channels": channels,
                "has_audio": False,
            },
        }


def _names(names: tuple[str, ...] | None) -> list[str] | None:
    return list(names) if names is not None else None


@dataclass(frozen=True)
class ExportedDataset:
    """One LeRobot dataset written by :func:`export_lerobot`."""

    root: Path
    robot_type: str
    episodes: tuple[str, ...]
    frames: int
    features: tuple[str, ...]


# -- features ---------------------------------------------------------------------------------
def plan_features(
    episode: EpisodeInfo, manifest: EpisodeManifest, frames: pa.Table, *, videos: bool
) -> list[Feature]:
    """The LeRobot features an episode's aligned frames give, in a stable order."""
    by_type: dict[str, int] = {}
    for decl in manifest.streams:
        by_type[decl.stream_type.name] = by_type.get(decl.stream_type.name, 0) + 1
    features: list[Feature] = []
    for decl in manifest.streams:
        stream_type = decl.stream_type
        if stream_type.name in SKIPPED_TYPES or f"{decl.name}.t_ns" not in frames.column_names:
            continue
        if stream_type.name == "image":
            if videos:
                first = frames.slice(0, 1)
                shape = (
                    int(first[f"{decl.name}.height"][0].as_py()),
                    int(first[f"{decl.name}.width"][0].as_py()),
                    3,
                )
                source = f"{decl.name}.data"
                features.append(
                    Feature(f"observation.images.{decl.name}", "video", source, shape, None)
                )
            continue
        renames = lerobot_renames(stream_type)
        for spec in stream_type.fields:
            source = f"{decl.name}.{spec.name}"
            if spec.name == "t_ns" or source not in frames.column_names:
                continue
            width = _vector_width(frames[source])
            if width is None:
                continue
            if spec.name in renames:
                key = renames[spec.name]
                if by_type[stream_type.name] > 1:
                    key = f"{key}.{decl.name}"
            else:
                key = f"observation.{decl.name}.{spec.name}"
            names = tuple(decl.elements) if spec.elements and decl.elements else None
            if names is None and width in _AXES:
                names = tuple(_AXES[width])
            features.append(Feature(key, "vector", source, (width,), names))
    keys = [f.key for f in features]
    if len(set(keys)) != len(keys):
        raise DatasetError(f"episode {episode.episode_id} maps two streams to one LeRobot key")
    return features


def _vector_width(column: pa.ChunkedArray) -> int | None:
    """Width of a numeric vector column without nulls (scalars are width 1), else None."""
    kind = column.type
    if column.null_count:
        return None
    if pa.types.is_floating(kind) or pa.types.is_integer(kind):
        return 1
    if not (pa.types.is_list(kind) or pa.types.is_fixed_size_list(kind)):
        return None
    value_type = kind.value_type
    if not (pa.types.is_floating(value_type) or pa.types.is_integer(value_type)):
        return None
    lengths = pc.list_value_length(column).to_numpy()
    if len(lengths) == 0 or (lengths != lengths[0]).any():
        return None
    return int(lengths[0])


def _vectors(column: pa.ChunkedArray, width: int) -> np.ndarray[Any, Any]:
    array = column.combine_chunks()
    if width == 1 and not (pa.types.is_list(array.type) or pa.types.is_fixed_size_list(array.type)):
        scalars: np.ndarray[Any, Any] = array.to_numpy(zero_copy_only=False)
        return scalars.astype(np.float32).reshape(-1, 1)
    flat: np.ndarray[Any, Any] = array.flatten().to_numpy(zero_copy_only=False)
    return flat.astype(np.float32).reshape(len(array), width)


def feature_set_id(robot_type: str, features: Sequence[Feature]) -> str:
    """A short, stable id of a robot type and feature set (names the dataset directory)."""
    text = json.dumps([robot_type, [(f.key, f.kind, f.shape, f.names) for f in features]])
    return hashlib.sha256(text.encode()).hexdigest()[:8]


# -- tasks ------------------------------------------------------------------------------------
def frame_tasks(
    data: RobolakeDataset, episode: EpisodeInfo, ticks: np.ndarray[Any, Any]
) -> list[str]:
    """The task of each frame: the newest instruction event at or before it, else the manifest's."""
    events = [s.name for s in episode.streams if s.type == "event" and s.rows > 0]
    tasks = [episode.task] * len(ticks)
    for name in events:
        table = data.read_stream(episode, name, columns=["t_ns", "kind", "text"])
        table = table.filter(pc.equal(table["kind"], "instruction"))
        table = table.filter(pc.is_valid(table["text"]))
        if table.num_rows == 0:
            continue
        index = asof_indices(table["t_ns"].to_numpy(), ticks)
        texts = table["text"].to_pylist()
        tasks = [texts[i] if i >= 0 else task for i, task in zip(index, tasks, strict=True)]
    return tasks


# -- one output dataset -----------------------------------------------------------------------
@dataclass
class _Rotating:
    """Which (chunk, file) a rotating output is at."""

    chunk: int = 0
    file: int = 0

    def advance(self) -> None:
        self.file += 1
        if self.file >= CHUNKS_SIZE:
            self.chunk, self.file = self.chunk + 1, 0


@dataclass
class _Builder:
    root: Path
    robot_type: str
    features: list[Feature]
    options: ExportOptions
    tasks: dict[str, int] = field(default_factory=dict)
    episode_rows: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, list[feature_stats.FeatureStats]] = field(default_factory=dict)
    pixels: dict[str, list[np.ndarray[Any, Any]]] = field(default_factory=dict)
    frames: int = 0
    episode_ids: list[str] = field(default_factory=list)
    data_at: _Rotating = field(default_factory=_Rotating)
    data_writer: pq.ParquetWriter | None = None
    data_bytes: int = 0
    data_files: list[Path] = field(default_factory=list)
    videos: dict[str, tuple[_Rotating, Mp4Writer]] = field(default_factory=dict)

    def schema(self) -> pa.Schema:
        columns = [pa.field(f.key, pa.list_(pa.float32(), f.shape[0]), nullable=False)
                   for f in self.features if f.kind == "vector"]  # fmt: skip
        columns += [
            pa.field("timestamp", pa.float32(), nullable=False),
            *(pa.field(name, pa.int64(), nullable=False) for name in FRAME_COLUMNS[1:]),
        ]
        return pa.schema(columns)

    def add(self, episode: EpisodeInfo, frames: pa.Table, tasks: list[str]) -> None:
        count = frames.num_rows
        episode_index = len(self.episode_rows)
        task_index = np.array([self.tasks.setdefault(t, len(self.tasks)) for t in tasks], np.int64)
        columns: dict[str, np.ndarray[Any, Any]] = {}
        arrays: list[pa.Array] = []
        for feature in self.features:
            if feature.kind != "vector":
                continue
            values = _vectors(frames[feature.source], feature.shape[0])
            columns[feature.key] = values
            arrays.append(
                pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), feature.shape[0])
            )
        frame_index = np.arange(count, dtype=np.int64)
        defaults = {
            "timestamp": frames["timestamp"].to_numpy().astype(np.float32),
            "frame_index": frame_index,
            "episode_index": np.full(count, episode_index, np.int64),
            "index": np.arange(self.frames, self.frames + count, dtype=np.int64),
            "task_index": task_index,
        }
        arrays += [pa.array(v) for v in defaults.values()]
        table = pa.Table.from_arrays(arrays, schema=self.schema())
        row: dict[str, Any] = {
            "episode_index": episode_index,
            "tasks": sorted(set(tasks), key=tasks.index),
            "length": count,
            **self._write_data(table),
            "dataset_from_index": self.frames,
            "dataset_to_index": self.frames + count,
        }
        for feature in self.features:
            if feature.kind == "video":
                row.update(self._write_video(feature, frames))
        for key, values in {
            **columns,
            **{k: v.reshape(-1, 1) for k, v in defaults.items()},
        }.items():
            stats = feature_stats.compute(values)
            self.stats.setdefault(key, []).append(stats)
            row.update({f"stats/{key}/{name}": value for name, value in stats.to_json().items()})
        for feature in self.features:
            if feature.kind == "video":
                stats = self.stats[feature.key][-1]
                row.update({f"stats/{feature.key}/{name}": value
                            for name, value in _image_stats(stats).items()})  # fmt: skip
        row["meta/episodes/chunk_index"], row["meta/episodes/file_index"] = 0, 0
        row["robolake/episode_id"] = episode.episode_id
        row["robolake/scene"] = episode.scene
        row["robolake/capture_point_id"] = episode.capture_point_id
        self.episode_rows.append(row)
        self.episode_ids.append(episode.episode_id)
        self.frames += count

    def _write_data(self, table: pa.Table) -> dict[str, int]:
        limit = self.options.data_file_mb * 1024 * 1024
        if self.data_writer is not None and self.data_bytes >= limit:
            self.data_writer.close()
            self.data_writer, self.data_bytes = None, 0
            self.data_at.advance()
        if self.data_writer is None:
            path = self.root / DATA_PATH.format(chunk_index=self.data_at.chunk,
                                                file_index=self.data_at.file)  # fmt: skip
            path.parent.mkdir(parents=True, exist_ok=True)
            self.data_writer = pq.ParquetWriter(path, table.schema, compression="zstd")
            self.data_files.append(path)
        self.data_writer.write_table(table)
        self.data_bytes += table.nbytes
        return {"data/chunk_index": self.data_at.chunk, "data/file_index": self.data_at.file}

    def _write_video(self, feature: Feature, frames: pa.Table) -> dict[str, Any]:
        stream = feature.source.rsplit(".", 1)[0]
        height, width, _ = feature.shape
        at, writer = self.videos.get(feature.key, (_Rotating(), None))
        if writer is not None and writer.size_bytes() >= self.options.video_file_mb * 1024 * 1024:
            writer.close()
            at.advance()
            writer = None
        if writer is None:
            path = self.root / VIDEO_PATH.format(video_key=feature.key, chunk_index=at.chunk,
                                                 file_index=at.file)  # fmt: skip
            writer = Mp4Writer(path, fps=self.options.fps, width=width, height=height,
                               codec=self.options.codec)  # fmt: skip
            self.videos[feature.key] = (at, writer)
        start = writer.seconds
        encodings = frames[f"{stream}.encoding"].to_pylist()
        images = frames[feature.source].to_pylist()
        count = len(images)
        sample = set(
            np.linspace(0, count - 1, min(count, self.options.image_stat_frames))
            .astype(int)
            .tolist()
        )
        pixels = []
        for i, (data, encoding) in enumerate(zip(images, encodings, strict=True)):
            rgb = decode_image(data, encoding, width, height)
            writer.add(rgb)
            if i in sample:
                step = max(1, max(height, width) // 32)
                pixels.append(rgb[::step, ::step].reshape(-1, 3))
        sampled = np.concatenate(pixels)
        self.pixels.setdefault(feature.key, []).append(sampled)
        self.stats.setdefault(feature.key, []).append(feature_stats.compute(sampled / 255.0))
        return {
            f"videos/{feature.key}/chunk_index": at.chunk,
            f"videos/{feature.key}/file_index": at.file,
            f"videos/{feature.key}/from_timestamp": start,
            f"videos/{feature.key}/to_timestamp": writer.seconds,
        }

    def finish(self) -> ExportedDataset:
        if self.data_writer is not None:
            self.data_writer.close()
        for _, writer in self.videos.values():
            writer.close()
        stats: dict[str, Any] = {}
        for key, parts in self.stats.items():
            feature = next((f for f in self.features if f.key == key), None)
            if feature is not None and feature.kind == "video":
                merged = feature_stats.merge(parts, np.concatenate(self.pixels[key]) / 255.0)
                stats[key] = _image_stats(merged)
                continue
            column = pq.read_table(self.data_files, columns=[key])[key].combine_chunks()
            width = feature.shape[0] if feature is not None else 1
            stats[key] = feature_stats.merge(
                parts, _vectors(pa.chunked_array([column]), width)
            ).to_json()
        _write_json(self.root / STATS_PATH, stats)
        _write_tasks(self.root / TASKS_PATH, self.tasks)
        episodes_path = self.root / EPISODES_PATH.format(chunk_index=0, file_index=0)
        episodes_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(self.episode_rows), episodes_path, compression="zstd")
        features: dict[str, Any] = {f.key: f.info(self.options.fps, self.options.codec)
                                    for f in self.features}  # fmt: skip
        features["timestamp"] = {"dtype": "float32", "shape": [1], "names": None}
        for name in FRAME_COLUMNS[1:]:
            features[name] = {"dtype": "int64", "shape": [1], "names": None}
        has_videos = any(f.kind == "video" for f in self.features)
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.robot_type,
            "total_episodes": len(self.episode_rows),
            "total_frames": self.frames,
            "total_tasks": len(self.tasks),
            "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": self.options.data_file_mb,
            "video_files_size_in_mb": self.options.video_file_mb,
            "fps": self.options.fps,
            "splits": {"train": f"0:{len(self.episode_rows)}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if has_videos else None,
            "features": features,
        }
        _write_json(self.root / INFO_PATH, info)
        return ExportedDataset(self.root, self.robot_type, tuple(self.episode_ids), self.frames,
                               tuple(features))  # fmt: skip


def _image_stats(stats: feature_stats.FeatureStats) -> dict[str, Any]:
    """A camera's statistics as LeRobot stores them: per-channel values channel-first, shape
    (channels, 1, 1), so they broadcast over (channels, height, width) frames -- but ``count``
    shape (1,) like every feature's: it counts frames, it has no channels, and LeRobot's
    aggregation and merge (``lerobot-edit-dataset``) refuse any other shape."""
    return {
        name: value if name == "count" else [[[v]] for v in value]
        for name, value in stats.to_json().items()
    }


def _write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def _write_tasks(path: Path, tasks: dict[str, int]) -> None:
    """``meta/tasks.parquet`` as pandas writes a frame indexed by task (LeRobot reads it so)."""
    ordered = sorted(tasks.items(), key=lambda item: item[1])
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": "task",
                "field_name": "task",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.0",
    }
    table = pa.table(
        {
            "task_index": pa.array([i for _, i in ordered], pa.int64()),
            "task": pa.array([t for t, _ in ordered], pa.string()),
        }
    ).replace_schema_metadata({"pandas": json.dumps(pandas_meta)})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


# -- the export -------------------------------------------------------------------------------
def export_lerobot(
    data: RobolakeDataset,
    out_dir: Path,
    options: ExportOptions,
    criteria: EpisodeFilter | None = None,
    *,
    episodes: Iterable[EpisodeInfo] | None = None,
) -> list[ExportedDataset]:
    """Write the selected episodes under ``out_dir``: one LeRobot dataset per robot type and
    feature set, named after the robot type (plus the feature set's id when a robot type has
    several). ``out_dir`` must not hold an earlier export."""
    if options.fps <= 0:
        raise DatasetError(f"--fps must be a positive integer, not {options.fps}")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise DatasetError(f"{out_dir} is not empty; export into a new directory")
    selected = list(episodes) if episodes is not None else data.episodes(criteria)
    if not selected:
        raise DatasetError("no episode matches the filters; nothing to export")
    builders: dict[str, _Builder] = {}
    for episode in selected:
        frames = episode_frames(data, episode, options.fps, streams=_streams(episode))
        if frames.num_rows == 0:
            log.warning(
                "episode %s has no frame at %d fps; skipped", episode.episode_id, options.fps
            )
            continue
        manifest = data.manifest(episode)
        features = plan_features(episode, manifest, frames, videos=options.videos)
        group = feature_set_id(episode.robot_type, features)
        builder = builders.get(group)
        if builder is None:
            root = out_dir / f"{_safe(episode.robot_type)}-{group}"
            builder = builders[group] = _Builder(root, episode.robot_type, features, options)
        tasks = frame_tasks(data, episode, frames["t_ns"].to_numpy())
        builder.add(episode, frames, tasks)
        log.info("exported episode %s: %d frames", episode.episode_id, frames.num_rows)
    results = [builder.finish() for builder in builders.values()]
    per_type: dict[str, int] = {}
    for result in results:
        per_type[result.robot_type] = per_type.get(result.robot_type, 0) + 1
    final = []
    for result in results:
        if per_type[result.robot_type] == 1:
            target = out_dir / _safe(result.robot_type)
            shutil.move(result.root, target)
            result = ExportedDataset(target, result.robot_type, result.episodes, result.frames,
                                     result.features)  # fmt: skip
        final.append(result)
    return final


def _streams(episode: EpisodeInfo) -> list[str]:
    """The streams aligned for export: every stream with rows except skipped types."""
    return [s.name for s in episode.streams if s.rows > 0 and s.type not in SKIPPED_TYPES]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "robot"
