"""Synthetic episodes served from memory the way ``RobolakeDataset`` serves the bucket's, so the
LeRobot exporter (and the importer's tests, on its output) run without a stack."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import cast

import pyarrow as pa

from robolake.dataset.episodes import EpisodeInfo, StreamInfo
from robolake.dataset.reader import RobolakeDataset
from robolake.episode.manifest import EpisodeManifest
from robolake.episode.synthetic import SyntheticEpisode, SyntheticSpec, generate_episode


def _utc(ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC)


class MemoryLake:
    """The three reads the exporter makes (manifest, episode, stream) over generated episodes."""

    def __init__(self, episodes: Sequence[SyntheticEpisode]) -> None:
        self.sent = {e.manifest.episode_id: e for e in episodes}

    def info(self, episode: SyntheticEpisode) -> EpisodeInfo:
        manifest = episode.manifest
        streams = []
        for decl in manifest.streams:
            table = episode.streams[decl.name]
            times = table["t_ns"].to_pylist()
            streams.append(
                StreamInfo(decl.name, decl.stream_type.name, decl.stream_type.version,
                           table.num_rows, 1, min(times, default=None), max(times, default=None))
            )  # fmt: skip
        document = episode.manifest_document
        return EpisodeInfo(
            episode_id=manifest.episode_id,
            capture_point_id=str(document["capture_point_id"]),
            device_id=str(document["device_id"]),
            organisation="org-test",
            robot_type=str(document["robot_type"]),
            scene=str(document["scene"]),
            task=str(document["task"]),
            operator=str(document["operator"]),
            started_at=_utc(min(s.first_t_ns or 0 for s in streams)),
            ended_at=_utc(max(s.last_t_ns or 0 for s in streams)),
            tags=tuple(document.get("tags", ())),
            complete=True,
            quality_flags=(),
            streams=tuple(streams),
            shard_files=(),
            indexed_at=_utc(0),
        )

    def infos(self) -> list[EpisodeInfo]:
        return [self.info(e) for e in self.sent.values()]

    def manifest(self, episode: EpisodeInfo | str) -> EpisodeManifest:
        key = episode if isinstance(episode, str) else episode.episode_id
        return self.sent[key].manifest

    def read_stream(
        self, episode: EpisodeInfo | str, stream: str, *, columns: Sequence[str] | None = None
    ) -> pa.Table:
        key = episode if isinstance(episode, str) else episode.episode_id
        table = self.sent[key].streams[stream].sort_by("t_ns")
        return table.select(list(columns)) if columns is not None else table

    def read_episode(
        self, episode: EpisodeInfo | str, streams: Sequence[str] | None = None
    ) -> dict[str, pa.Table]:
        key = episode if isinstance(episode, str) else episode.episode_id
        names = list(streams) if streams is not None else list(self.sent[key].streams)
        return {name: self.read_stream(key, name) for name in names}

    def as_dataset(self) -> RobolakeDataset:
        """Typed as what the exporter takes; it calls only the methods above."""
        return cast(RobolakeDataset, self)


def small_episode(
    seed: int,
    *,
    joints: int = 7,
    cameras: tuple[str, ...] = ("head",),
    task: str = "tighten the bolt",
    duration_s: float = 1.0,
) -> SyntheticEpisode:
    """A short arm episode with small cameras (fast to encode)."""
    return generate_episode(
        SyntheticSpec(
            seed=seed,
            duration_s=duration_s,
            joints=joints,
            pose_rate_hz=None,
            cameras=cameras,
            camera_rate_hz=15.0,
            width=64,
            height=48,
            frame_pool=4,
            robot_type="arm_7dof" if joints == 7 else f"arm_{joints}dof",
            scene="factory",
            task=task,
            device_id=f"dev-{seed}",
            capture_point_id=f"cp-{seed}",
        )
    )
