"""Synthetic episodes: deterministic, realistic rates and real JPEG frames."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pyarrow as pa
from PIL import Image

from robolake.episode.synthetic import (
    HUMANOID_JOINTS,
    SyntheticEpisode,
    SyntheticSpec,
    camera_frames,
    frame_pool,
    generate_episode,
)


def test_same_seed_same_bytes() -> None:
    spec = SyntheticSpec(seed=3, duration_s=1.0, frame_pool=2)
    first, second = generate_episode(spec), generate_episode(spec)
    assert first.manifest_bytes() == second.manifest_bytes()
    assert first.chunks() == second.chunks()
    other = generate_episode(SyntheticSpec(seed=4, duration_s=1.0, frame_pool=2))
    assert other.manifest.episode_id != first.manifest.episode_id
    assert other.chunks()["joint_state"] != first.chunks()["joint_state"]


def test_humanoid_rates_and_shapes(episode: SyntheticEpisode) -> None:
    rows = {name: table.num_rows for name, table in episode.streams.items()}
    assert rows["joint_state"] == 200
    assert rows["action"] == 200
    assert rows["imu"] == 400
    assert rows["cam_head"] == rows["cam_wrist_left"] == rows["cam_wrist_right"] == 60
    assert len(HUMANOID_JOINTS) == len(set(HUMANOID_JOINTS)) == 29
    position = episode.streams["joint_state"].column("position")
    assert set(np.diff(position.chunk(0).offsets.to_numpy())) == {29}
    t = episode.streams["imu"].column("t_ns").to_numpy()
    period = np.diff(t)
    assert period.min() > 0
    assert abs(np.median(period) - 5_000_000) < 300_000


def test_frames_are_real_jpegs(episode: SyntheticEpisode) -> None:
    frames = episode.streams["cam_head"].column("data").to_pylist()
    distinct = set(frames)
    assert len(distinct) == 4  # the pool
    for data in distinct:
        image = Image.open(io.BytesIO(data))
        assert image.format == "JPEG"
        assert image.size == (640, 480)
        image.load()
        assert 10_000 < len(data) < 200_000


def test_frame_pool_is_encoded_once() -> None:
    assert frame_pool(11, 0, 64, 48, 2) is frame_pool(11, 0, 64, 48, 2)
    assert frame_pool(11, 0, 64, 48, 2) != frame_pool(11, 1, 64, 48, 2)


def test_frames_never_repeat_within_an_episode() -> None:
    spec = SyntheticSpec(seed=21, frame_seed=5, duration_s=1.0, cameras=("a", "b"))
    episode = generate_episode(spec)
    frames = [
        frame
        for name in ("cam_a", "cam_b")
        for frame in episode.streams[name].column("data").to_pylist()
    ]
    assert len(frames) == 60
    assert len(set(frames)) == len(frames)
    # Incompressible as a real camera's JPEG: no repeats for zstd to find.
    joined = b"".join(frames)
    assert len(pa.compress(joined, "zstd", asbytes=True)) > 0.98 * len(joined)
    # Another episode sharing the frame seed starts at another frame, still none repeated.
    other = generate_episode(replace(spec, seed=22)).streams["cam_a"].column("data").to_pylist()
    assert len(set(other)) == 30
    assert other != episode.streams["cam_a"].column("data").to_pylist()


def test_camera_frames_are_the_same_bytes_in_any_order() -> None:
    late_first = camera_frames(31, 0, 64, 48, count=6, first=4).to_pylist()
    in_order = camera_frames(32, 0, 64, 48, count=6).to_pylist()
    assert len(set(late_first)) == 6
    assert camera_frames(31, 0, 64, 48, count=6).to_pylist() == late_first[2:] + late_first[:2]
    assert set(in_order).isdisjoint(late_first)


def test_events_tell_the_task_and_outcome(episode: SyntheticEpisode) -> None:
    events = episode.streams["events"].to_pylist()
    assert events[0]["kind"] == "instruction"
    assert events[0]["text"] == episode.manifest.task
    assert events[-1]["kind"] == "success_label"
    assert events[-1]["value"] in (0.0, 1.0)
