"""The ML readers on a dataset the real pipeline wrote: filters select exactly the matching
episodes, and an episode read back equals what the device sent."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest
from dataset_harness import DEVICES, INCOMPLETE, ProducedDataset

from robolake.dataset import EpisodeFilter, RobolakeDataset, align_streams
from robolake.dataset.episodes import read_index
from robolake.dataset.errors import DatasetError
from robolake.devices.registry import DeviceRegistry


@pytest.fixture
def data(produced: ProducedDataset) -> RobolakeDataset:
    return RobolakeDataset.open(
        produced.url, endpoints=produced.endpoints, devices_file=produced.devices_file
    )


def _expected(produced: ProducedDataset, predicate: object) -> set[str]:
    """Ids of the uploaded episodes (the incomplete one too) whose plan meets ``predicate``."""
    assert callable(predicate)
    plans = {**produced.plans, produced.incomplete.manifest.episode_id: INCOMPLETE}
    return {episode_id for episode_id, plan in plans.items() if predicate(plan)}


def _selected(data: RobolakeDataset, criteria: EpisodeFilter) -> set[str]:
    return {e.episode_id for e in data.episodes(criteria)}


def test_index_lists_every_uploaded_episode_once(
    data: RobolakeDataset, produced: ProducedDataset
) -> None:
    ids = [e.episode_id for e in data.episodes()]
    assert sorted(ids) == ids
    assert set(ids) == {*produced.episodes, produced.incomplete.manifest.episode_id}
    assert len(ids) == len(set(ids))


def test_filters_return_exactly_the_matching_episodes(
    data: RobolakeDataset, produced: ProducedDataset
) -> None:
    day2 = dt.datetime(2026, 1, 7, tzinfo=dt.UTC)
    cases = [
        (EpisodeFilter(scenes=("warehouse",)), lambda p: p.scene == "warehouse"),
        (EpisodeFilter(scenes=("factory", "home")), lambda p: p.scene in ("factory", "home")),
        (EpisodeFilter(task="RED"), lambda p: "red" in p.task.lower()),
        (EpisodeFilter(robot_types=("arm_7dof",)), lambda p: p.robot_type == "arm_7dof"),
        (EpisodeFilter(capture_points=("cp-b",)), lambda p: p.device == "dev-b"),
        (EpisodeFilter(organisations=("org-1",)), lambda p: p.device in ("dev-a", "dev-c")),
        (EpisodeFilter(started_from=day2), lambda p: p.day >= 2),
        (
            EpisodeFilter(started_from=dt.datetime(2026, 1, 6), started_before=day2),
            lambda p: p.day == 1,
        ),
        (
            EpisodeFilter(scenes=("factory",), organisations=("org-2",), complete=True),
            lambda p: p.scene == "factory" and p.device == "dev-b",
        ),
        (EpisodeFilter(complete=True, clean=True), lambda p: p is not INCOMPLETE),
        (
            EpisodeFilter(organisations=("org-1",), complete=True),
            lambda p: p.device in ("dev-a", "dev-c") and p is not INCOMPLETE,
        ),
    ]
    for criteria, predicate in cases:
        assert _selected(data, criteria) == _expected(produced, predicate), criteria


def test_index_rows_carry_the_organisation_of_the_uploading_token(
    produced: ProducedDataset, tmp_path: Path
) -> None:
    """Collector → Kafka headers → writer → index: each row names the organisation its device's
    token was enrolled with, and readers use it without the device registry."""
    plans = {**produced.plans, produced.incomplete.manifest.episode_id: INCOMPLETE}
    rows = read_index(produced.endpoints, columns=["episode_id", "organisation", "indexed_at"])
    assert {r["episode_id"]: r["organisation"] for r in rows.to_pylist()} == {
        episode_id: DEVICES[plan.device][1] for episode_id, plan in plans.items()
    }
    org_1 = _expected(produced, lambda p: DEVICES[p.device][1] == "org-1")
    bare = RobolakeDataset.open(produced.url, endpoints=produced.endpoints)
    assert _selected(bare, EpisodeFilter(organisations=("org-1",))) == org_1
    # A registry that says otherwise now (dev-a moved to org-9) does not rewrite the past: the
    # registry is only asked about rows without an organisation, and there are none.
    moved = DeviceRegistry(tmp_path / "devices.json")
    for device, (capture_point, organisation) in DEVICES.items():
        moved.add(device, capture_point, "org-9" if device == "dev-a" else organisation)
    later = RobolakeDataset.open(
        produced.url, endpoints=produced.endpoints, devices_file=moved.path
    )
    assert _selected(later, EpisodeFilter(organisations=("org-9",))) == set()
    assert _selected(later, EpisodeFilter(organisations=("org-1",))) == org_1


def test_incomplete_episode_is_flagged_and_filtered(
    data: RobolakeDataset, produced: ProducedDataset
) -> None:
    incomplete_id = produced.incomplete.manifest.episode_id
    episode = data.episode(incomplete_id)
    assert not episode.complete
    assert "empty_stream" in episode.quality_flags
    assert _selected(data, EpisodeFilter(complete=False)) == {incomplete_id}
    assert _selected(data, EpisodeFilter(with_flags=("empty_stream",))) == {incomplete_id}
    assert incomplete_id not in _selected(data, EpisodeFilter(without_flags=("empty_stream",)))
    assert _selected(data, EpisodeFilter(scenes=(INCOMPLETE.scene,))) == {incomplete_id}
    # What did arrive is readable.
    rows = data.read_stream(episode, "joint_state")
    assert rows.equals(produced.incomplete.streams["joint_state"])


def test_episode_read_back_equals_what_the_device_sent(
    data: RobolakeDataset, produced: ProducedDataset
) -> None:
    for episode_id, sent in produced.episodes.items():
        episode = data.episode(episode_id)
        assert episode.complete
        assert episode.quality_flags == ()
        streams = data.read_episode(episode)
        assert set(streams) == set(sent.streams)
        for name, table in streams.items():
            expected = sent.streams[name]
            assert table.schema.equals(expected.schema), name
            assert table.equals(expected), f"{episode_id}/{name} differs from what was sent"
        manifest = data.manifest(episode)
        assert manifest.document == sent.manifest_document


def test_align_episode_to_a_fixed_rate(data: RobolakeDataset, produced: ProducedDataset) -> None:
    episode_id, sent = next(iter(produced.episodes.items()))
    streams = data.read_episode(episode_id, ["joint_state", "imu", "cam_head"])
    frames = align_streams(streams, rate_hz=10)
    first = max(int(sent.streams[name]["t_ns"][0].as_py()) for name in streams)
    last = min(int(sent.streams[name]["t_ns"][-1].as_py()) for name in streams)
    assert frames["t_ns"][0].as_py() == first
    assert frames.num_rows == 1 + (last - first) // 100_000_000
    # Every camera frame used is the newest at or before its tick, never one from the future.
    ticks = frames["t_ns"].to_numpy()
    used = frames["cam_head.t_ns"].to_numpy()
    assert (used <= ticks).all()
    camera = sent.streams["cam_head"]["t_ns"].to_numpy()
    for tick, sample in zip(ticks, used, strict=True):
        assert sample == camera[camera <= tick].max()
    assert frames["joint_state.position"].type == pa.list_(pa.float32())


def test_unknown_episode_and_stream_say_so(data: RobolakeDataset) -> None:
    with pytest.raises(DatasetError, match="not in the index"):
        data.episode("00000000-0000-7000-8000-000000000000")
    episode = data.episodes()[0]
    with pytest.raises(DatasetError, match="has no stream 'lidar'"):
        data.read_stream(episode, "lidar")
