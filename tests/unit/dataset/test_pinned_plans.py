"""Which files of a pinned snapshot an episode's read opens: its date, inside its id bounds."""

from __future__ import annotations

import datetime as dt

from robolake.dataset.episodes import EpisodeInfo
from robolake.dataset.storage import PlannedFile, Plans, _pinned_paths
from robolake.endpoints import Endpoints

EPISODE = "019bb0f7-f9c0-73aa-8000-000000000001"
DAYS = 20465


def test_a_file_may_hold_an_episode_of_its_date_inside_its_bounds() -> None:
    # Iceberg truncates string bounds to 16 characters: a prefix below, an incremented one above.
    inside = PlannedFile("b/k", DAYS, "019bb0f7-f9c0-73", "019bb0f7-f9c0-74")
    assert inside.may_hold(EPISODE, DAYS)
    assert not inside.may_hold(EPISODE, DAYS + 1)
    assert not PlannedFile("b/k", DAYS, "019bb0f7-f9c0-74", None).may_hold(EPISODE, DAYS)
    assert not PlannedFile("b/k", DAYS, None, "019bb0f7-f9c0-72").may_hold(EPISODE, DAYS)
    # Without bounds or a date, nothing can be ruled out.
    assert PlannedFile("b/k", None, None, None).may_hold(EPISODE, DAYS)
    assert PlannedFile("b/k", DAYS, None, None).may_hold(EPISODE, None)


def test_the_index_rows_files_are_read_while_the_snapshot_still_holds_them() -> None:
    endpoints = Endpoints("k:9092", "http://127.0.0.1:9000", "ak", "sk", s3_bucket="b")
    data = "lake/ns/joint_state_v1/data/date=2026-01-12"
    first = PlannedFile(f"b/{data}/a.parquet", DAYS, "019bb0f7-f9c0-73", "019bb0f7-f9c0-74")
    other = PlannedFile(f"b/{data}/c.parquet", DAYS, "019bb0f0-0000-70", "019bb0ff-0000-70")
    plans: Plans = {("joint_state_v1", 7): [first, other]}
    exact = _pinned_paths(endpoints, "joint_state_v1", 7, EPISODE, plans, [f"{data}/a.parquet"])
    assert exact == [first.path]
    # Compaction replaced the listed file: every file whose bounds may hold the episode.
    pruned = _pinned_paths(endpoints, "joint_state_v1", 7, EPISODE, plans, [f"{data}/x.parquet"])
    assert pruned == [first.path, other.path]


def test_an_episode_names_its_files_of_either_layout() -> None:
    table_key = "lake/ns/joint_state_v1/data/date=2026-01-12/t+000+0000000000000000000-1-ab.parquet"
    files = (
        "shards/joint_state.v1/date=2026-01-12/t+000+0000000000000000000.parquet",
        table_key,
        "lake/ns/action_v1/data/date=2026-01-12/t+000+0000000000000000000-1-ab.parquet",
    )
    info = EpisodeInfo(
        EPISODE, "cp", "d", "acme", "g1", "lab", "t", "op", dt.datetime.now(dt.UTC),
        dt.datetime.now(dt.UTC), (), True, (), (), files, dt.datetime.now(dt.UTC),
    )  # fmt: skip
    assert info.shard_files_of("joint_state.v1") == [files[0], table_key]
