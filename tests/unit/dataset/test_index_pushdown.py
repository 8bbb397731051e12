"""A filter pushed down to the index tables selects exactly what filtering the whole index does.

The tables are replaced by an in-memory dataset that ignores the planning expression, so what is
checked here is the rule: candidates from the pushed-down part, then the newest row of each.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from robolake.dataset import episodes
from robolake.dataset.episodes import (
    EpisodeFilter,
    empty_index,
    filter_index,
    index_pushdown,
    newest_rows,
    read_index,
    with_organisation,
)
from robolake.endpoints import Endpoints

ENDPOINTS = Endpoints("k:9092", "http://127.0.0.1:9000", "ak", "sk", s3_bucket="a")
DAY = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
IDS = [
    "019b8c2e-7000-7000-8000-000000000001",
    "019b8c2e-7000-7000-8000-000000000002",
    "019b8c2e-7000-7000-8000-000000000003",
    "019b8c2e-7000-7000-8000-000000000004",
]


def _rows() -> pa.Table:
    """Four episodes, two rows each; the older row of each says another scene and task than
    the newer (the current) one, so a filter applied before the newest row is chosen would
    pick stale rows."""
    rows = []
    for i, (scene, task, complete) in enumerate(
        [
            ("warehouse", "Pick the red box", True),
            ("hospital", "open the drawer", True),
            ("warehouse", "scan the shelf", False),
            ("factory", "pick the red box", True),
        ]
    ):
        for version in range(2):
            rows.append({
                "episode_id": IDS[i], "capture_point_id": f"cp-{i % 2}", "device_id": f"d-{i}",
                "robot_type": "g1", "scene": scene if version else "warehouse",
                "task": task if version else "pick the red box",
                "operator": "op", "started_at": DAY + dt.timedelta(hours=i),
                "ended_at": DAY + dt.timedelta(hours=i, seconds=10), "tags": [],
                "license": None, "consent": None, "manifest_json": "{}", "streams": [],
                "shard_files": [], "complete": complete if version else True,
                "quality_flags": [], "indexed_at": DAY + dt.timedelta(days=1, hours=version),
                "organisation": "acme",
            })  # fmt: skip
    return pa.Table.from_pylist(rows, schema=empty_index().schema)


@pytest.fixture
def tables(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The index as the tables would serve it; records each planning expression."""
    planned: list[object] = []

    def fake_index(
        endpoints: Endpoints, *, snapshots: object = None, row_filter: object = None
    ) -> ds.Dataset:
        planned.append(row_filter)
        return ds.dataset(_rows())

    monkeypatch.setattr(episodes, "episodes_index", fake_index)
    monkeypatch.setattr(episodes, "uses_tables", lambda endpoints: True)
    monkeypatch.setattr(episodes, "has_index", lambda endpoints, snapshots=None: True)
    return planned


CRITERIA = [
    EpisodeFilter(scenes=("warehouse",)),
    EpisodeFilter(task="RED BOX"),
    EpisodeFilter(scenes=("warehouse",), task="red", complete=True),
    EpisodeFilter(started_from=DAY + dt.timedelta(hours=1), started_before=DAY.replace(hour=3)),
    EpisodeFilter(capture_points=("cp-1",), robot_types=("g1",)),
    EpisodeFilter(episode_ids=(IDS[2],), scenes=("warehouse",)),
    EpisodeFilter(scenes=("lab",)),
]


@pytest.mark.parametrize("criteria", CRITERIA)
def test_pushed_down_equals_filtering_the_whole_index(
    tables: list[object], criteria: EpisodeFilter
) -> None:
    everything = filter_index(with_organisation(newest_rows(_rows())), criteria)
    pushed = filter_index(with_organisation(read_index(ENDPOINTS, criteria=criteria)), criteria)
    assert pushed["episode_id"].to_pylist() == everything["episode_id"].to_pylist()
    assert pushed.to_pylist() == everything.drop_columns(["manifest_json"]).to_pylist()
    assert tables, "the tables were planned with the filter"


def test_stale_rows_matching_do_not_select_an_episode(tables: list[object]) -> None:
    criteria = EpisodeFilter(scenes=("warehouse",), task="red box")
    found = read_index(ENDPOINTS, criteria=criteria)
    # Every episode's older row matches; only the first episode's current row does.
    assert filter_index(with_organisation(found), criteria)["episode_id"].to_pylist() == [IDS[0]]


def test_state_that_changes_between_rows_is_never_pushed_down() -> None:
    assert index_pushdown(EpisodeFilter(complete=True)) is None
    assert index_pushdown(EpisodeFilter(organisations=("acme",), clean=True)) is None
    assert index_pushdown(EpisodeFilter(scenes=("mall",), complete=False)) is not None
