"""The lake benchmark's pure parts: the synthetic index it queries and the verdicts it reports."""

from __future__ import annotations

import datetime as dt

import pyarrow.compute as pc
import pytest

from robolake.bench import lake
from robolake.dataset.episodes import filter_index, newest_rows, with_organisation
from robolake.episode.ids import episode_date, is_uuid7
from robolake.episode.manifest import SCENES
from robolake.episode.shards import episodes_index

DAY = dt.date(2025, 3, 9)


def test_a_synthetic_day_is_valid_varied_and_deterministic() -> None:
    rows = lake.synthetic_index_day(DAY, 2_000, 7, "ns")
    assert rows.schema == episodes_index().schema
    assert rows.num_rows == 2_000
    assert rows.equals(lake.synthetic_index_day(DAY, 2_000, 7, "ns"))
    assert not rows.equals(lake.synthetic_index_day(DAY, 2_000, 8, "ns"))
    ids = rows["episode_id"].to_pylist()
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(is_uuid7(i) and episode_date(i) == DAY for i in ids[:50])
    started = [t.date() for t in rows["started_at"].to_pylist()]
    assert set(started) == {DAY}
    assert pc.all(pc.greater(rows["ended_at"], rows["started_at"])).as_py()
    # As varied as a fleet: every scene, most tasks, robots, hundreds of capture points.
    assert set(rows["scene"].to_pylist()) == set(SCENES)
    assert len(set(rows["task"].to_pylist())) == len(lake.TASKS)
    assert len(set(rows["robot_type"].to_pylist())) == len(lake.ROBOT_TYPES)
    assert len(set(rows["capture_point_id"].to_pylist())) > 500
    assert 0 < pc.sum(pc.invert(rows["complete"])).as_py() < 200
    assert all(len(s) == len(lake.STREAMS) for s in rows["streams"].to_pylist()[:20])
    assert all(len(f) == 5 for f in rows["shard_files"].to_pylist()[:20])
    assert all(m["episode_id"] in m["manifest_json"] for m in rows.slice(0, 20).to_pylist())


def test_a_lake_grows_by_days() -> None:
    assert lake.index_days(1_000, 1_000) == [(lake.FIRST_DAY, 1_000)]
    days = lake.index_days(2_500, 1_000)
    assert [count for _, count in days] == [1_000, 1_000, 500]
    assert days[-1][0] == lake.FIRST_DAY + dt.timedelta(days=2)
    assert sum(c for _, c in lake.index_days(10**6, 1_000)) == 10**6
    assert len(lake.index_days(10**6, 1_000)) == 1_000


@pytest.mark.parametrize("episodes", [1_000, 3_000])
def test_the_expected_answer_is_what_the_reader_filter_selects(episodes: int) -> None:
    query = lake.the_query(episodes, 1_000)
    assert query.day == lake.index_days(episodes, 1_000)[-1][0]
    days = [lake.synthetic_index_day(d, n, i, "ns") for i, (d, n) in enumerate(
        lake.index_days(episodes, 1_000)
    )]  # fmt: skip
    expected = sum(query.matches(day) for day in days)
    selected = 0
    for day in days:
        selected += filter_index(with_organisation(newest_rows(day)), query.criteria()).num_rows
    assert expected == selected > 0
    # Only the newest day can answer.
    assert all(query.matches(day) == 0 for day in days[:-1])


def _figures(**changes: float) -> lake.LakeFigures:
    base = {
        "reader_episodes": 3, "reader_frames": 900, "pinned_frames_per_s": 300.0,
        "listing_frames_per_s": 250.0, "files_small": 1_000, "files_large": 100_000,
        "upload_large_s": 1.0, "commit_large_s": 1.0, "scan_small_s": 0.5,
        "scan_large_s": 0.9, "cold_scan_small_s": 1.0, "cold_scan_large_s": 1.5,
        "episodes_small": 1_000, "episodes_large": 1_000_000, "index_files_large": 1_000,
        "index_mb_large": 190.0, "build_large_s": 100.0, "query_small_s": 0.1,
        "query_large_s": 0.4, "query_matches_small": 30, "query_matches_large": 31,
    }  # fmt: skip
    return lake.LakeFigures(**{**base, **changes})  # type: ignore[arg-type]


def _verdict(row: lake.Row) -> bool | None:
    """The report's rule (bench/report.py): a minimum ratio, else ``value < ceiling``."""
    _, value, ceiling, minimum, target = row
    if minimum is not None:
        return ceiling is not None and value / ceiling >= minimum
    return value < ceiling if ceiling is not None and target.startswith("<") else None


def test_rows_and_their_verdicts() -> None:
    rows = lake.rows(_figures())
    assert [r[0] for r in rows] == [
        "reader frames/s, pinned tables vs listing",
        "exporter scan 1e+05 / 1e+03 files",
        "exporter first scan 1e+05 / 1e+03 files",
        "episode query 1e+06 / 1e+03 eps",
    ]
    assert [r[4] for r in rows] == [
        ">= 1 x the listing reader",
        "< 3 x for 100 x the files",
        "< 3 x: bytes from the index, no file read",
        "< 30 x for 1000 x the episodes",
    ]
    assert [_verdict(r) for r in rows] == [True, True, True, True]
    assert rows[1][1] == pytest.approx(1.8)
    missed = lake.rows(
        _figures(
            pinned_frames_per_s=200.0,
            scan_large_s=50.0,
            cold_scan_large_s=500.0,
            query_large_s=10.0,
        )
    )
    assert [_verdict(r) for r in missed] == [False, False, False, False]


def test_growth_never_divides_by_zero() -> None:
    assert lake.growth(0.0, 0.002) == pytest.approx(2.0)
    assert lake.growth(0.5, 1.0) == pytest.approx(2.0)
