"""The pieces the exporter and the contribution report count with, without S3."""

from __future__ import annotations

import argparse
import datetime as dt

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from robolake.episode.shards import apportion
from robolake.ops.cli import parse_bytes
from robolake.ops.contributions import Period, ReportError
from robolake.ops.episodes import UNKNOWN_ORGANISATION, empty_index, newest_rows
from robolake.ops.inventory import aggregate, enrich

NS = 10**9


@given(
    size=st.integers(min_value=0, max_value=10**12),
    rows=st.dictionaries(st.text(min_size=1, max_size=4), st.integers(1, 10**6), min_size=1),
)
def test_apportion_sums_to_the_file_size_exactly(size: int, rows: dict[str, int]) -> None:
    parts = apportion(size, rows)
    assert sum(parts.values()) == size
    total = sum(rows.values())
    for episode, count in rows.items():
        assert abs(parts[episode] - size * count / total) < 1.0 + 1e-9


def _index(rows: list[dict[str, object]]) -> pa.Table:
    schema = empty_index().schema
    full = []
    for row in rows:
        full.append(
            {
                "capture_point_id": "cp-1",
                "device_id": "dev-1",
                "scene": "lab",
                "started_at": 0,
                "ended_at": 60 * NS,
                "complete": True,
                "quality_flags": [],
                "shard_files": [],
                **row,
            }
        )
    return pa.Table.from_pylist(full, schema=schema)


def test_newest_index_row_per_episode_wins() -> None:
    table = _index(
        [
            {"episode_id": "b", "indexed_at": 5, "complete": False},
            {"episode_id": "a", "indexed_at": 1},
            {"episode_id": "b", "indexed_at": 9, "complete": True},
            {"episode_id": "b", "indexed_at": 7, "complete": False},
        ]
    )
    newest = newest_rows(table)
    assert newest["episode_id"].to_pylist() == ["a", "b"]
    assert newest["indexed_at"].cast(pa.int64()).to_pylist() == [1, 9]
    assert newest["complete"].to_pylist() == [True, True]


def test_aggregate_counts_hours_bytes_flags_and_organisations() -> None:
    table = _index(
        [
            {"episode_id": "a", "indexed_at": 1, "device_id": "dev-1"},
            {"episode_id": "b", "indexed_at": 1, "device_id": "dev-1", "complete": False,
             "quality_flags": ["missing_chunks"], "ended_at": 120 * NS},
            {"episode_id": "c", "indexed_at": 1, "device_id": "dev-x", "capture_point_id": "cp-2",
             "scene": "mall", "started_at": 10 * NS, "ended_at": 40 * NS},
        ]
    )  # fmt: skip
    episodes = enrich(table, {"a": 100, "b": 50, "c": 7}, {"dev-1": "acme"})
    rows = aggregate(episodes, ["organisation", "capture_point_id"]).to_pylist()
    assert rows == [
        {"organisation": "acme", "capture_point_id": "cp-1", "episodes": 2,
         "complete_episodes": 1, "flagged_episodes": 1, "recorded_seconds": 180.0,
         "bytes": 150, "last_ended_at": 120 * NS},
        {"organisation": UNKNOWN_ORGANISATION, "capture_point_id": "cp-2", "episodes": 1,
         "complete_episodes": 1, "flagged_episodes": 0, "recorded_seconds": 30.0,
         "bytes": 7, "last_ended_at": 40 * NS},
    ]  # fmt: skip


def test_period_bounds_include_both_days() -> None:
    start, end = Period(dt.date(2026, 1, 1), dt.date(2026, 1, 1)).bounds_ns()
    assert end is not None
    assert end - start == 86400 * NS
    assert Period(dt.date(2026, 1, 1)).bounds_ns()[1] is None
    with pytest.raises(ReportError, match="before"):
        Period(dt.date(2026, 1, 2), dt.date(2026, 1, 1))


def test_parse_bytes_decimal_and_binary_units() -> None:
    assert parse_bytes("1PB") == 10**15
    assert parse_bytes("800 TB") == 800 * 10**12
    assert parse_bytes("1PiB") == 2**50
    assert parse_bytes("1e15") == 10**15
    with pytest.raises(argparse.ArgumentTypeError):
        parse_bytes("lots")
