"""A pinned reader plans each table's snapshot once and reads exactly what an unpinned one does."""

from __future__ import annotations

from dataset_harness import ProducedDataset

from robolake.dataset import RobolakeDataset
from robolake.dataset.frames import episode_frames


def test_pinned_reads_equal_unpinned_ones_and_plan_each_snapshot_once(
    produced: ProducedDataset,
) -> None:
    data = RobolakeDataset.open(
        produced.url, endpoints=produced.endpoints, devices_file=produced.devices_file
    )
    pinned = data.pinned()
    assert pinned.snapshots, "the tables have snapshots to pin"
    episodes = data.episodes()
    assert [e.episode_id for e in pinned.episodes()] == [e.episode_id for e in episodes]
    for episode in episodes:
        unpinned = data.read_episode(episode)
        assert pinned.read_episode(episode) == unpinned, episode.episode_id
        assert episode_frames(pinned, episode, 30.0).equals(episode_frames(data, episode, 30.0))
    tables = {table for table, _ in pinned._plans}
    assert len(pinned._plans) == len(tables), "one plan per table snapshot"
    assert not data._plans, "an unpinned reader plans from the current snapshot every time"
    again = RobolakeDataset.open(
        produced.url, endpoints=produced.endpoints, snapshots=pinned.snapshots
    )
    first = episodes[0]
    assert again.read_episode(first) == pinned.read_episode(first)
