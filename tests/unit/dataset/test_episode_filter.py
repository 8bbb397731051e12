"""Filters over index rows, and dataset URLs."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from robolake.dataset.episodes import (
    EpisodeFilter,
    empty_index,
    episode_infos,
    filter_index,
    newest_rows,
    with_organisation,
)
from robolake.dataset.errors import DatasetError
from robolake.dataset.storage import bucket_from_url, endpoints_for_url
from robolake.endpoints import Endpoints


def _index() -> pa.Table:
    schema = empty_index().schema
    day = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    rows = []
    for i, (scene, task, flags, complete) in enumerate(
        [
            ("warehouse", "Pick the red box", [], True),
            ("hospital", "open the drawer", ["no_success_label"], True),
            ("warehouse", "scan", ["empty_stream", "missing_chunks"], False),
        ]
    ):
        for version in range(2):  # an older and a newer index row per episode
            rows.append({
                "episode_id": f"ep-{i}", "capture_point_id": f"cp-{i % 2}", "device_id": f"d-{i}",
                "robot_type": "g1", "scene": scene if version else "other", "task": task,
                "operator": "op", "started_at": day + dt.timedelta(days=i),
                "ended_at": day + dt.timedelta(days=i, seconds=10), "tags": [],
                "license": None, "consent": None, "manifest_json": "{}", "streams": [],
                "shard_files": [], "complete": complete, "quality_flags": flags,
                "indexed_at": day + dt.timedelta(hours=version),
            })  # fmt: skip
    table = newest_rows(pa.Table.from_pylist(rows, schema=schema))
    return with_organisation(table, {"d-0": "acme", "d-2": "acme"})


def _ids(criteria: EpisodeFilter) -> list[str]:
    return filter_index(_index(), criteria)["episode_id"].to_pylist()


def test_newest_row_wins_before_filtering() -> None:
    assert _index().num_rows == 3
    assert _ids(EpisodeFilter(scenes=("other",))) == []
    assert _ids(EpisodeFilter(scenes=("warehouse",))) == ["ep-0", "ep-2"]


def test_each_criterion() -> None:
    assert _ids(EpisodeFilter(task="RED")) == ["ep-0"]
    assert _ids(EpisodeFilter(capture_points=("cp-1",))) == ["ep-1"]
    assert _ids(EpisodeFilter(organisations=("acme",))) == ["ep-0", "ep-2"]
    assert _ids(EpisodeFilter(organisations=("unknown",))) == ["ep-1"]
    assert _ids(EpisodeFilter(started_from=dt.datetime(2026, 1, 6))) == ["ep-1", "ep-2"]
    assert _ids(EpisodeFilter(started_before=dt.datetime(2026, 1, 6))) == ["ep-0"]
    assert _ids(EpisodeFilter(complete=False)) == ["ep-2"]
    assert _ids(EpisodeFilter(clean=True)) == ["ep-0"]
    assert _ids(EpisodeFilter(with_flags=("missing_chunks", "empty_stream"))) == ["ep-2"]
    assert _ids(EpisodeFilter(without_flags=("no_success_label",))) == ["ep-0", "ep-2"]
    assert _ids(EpisodeFilter(scenes=("warehouse",), complete=True)) == ["ep-0"]


def test_unknown_flag_is_refused() -> None:
    with pytest.raises(DatasetError, match="unknown quality flag"):
        EpisodeFilter(with_flags=("blurry",))


def test_episode_infos() -> None:
    info = episode_infos(_index())[0]
    assert info.episode_id == "ep-0"
    assert info.organisation == "acme"
    assert info.started_at_ns == 1_767_571_200 * 10**9


def test_dataset_urls() -> None:
    assert bucket_from_url("s3://robolake") == "robolake"
    assert bucket_from_url("s3://robolake/") == "robolake"
    for bad in ("s3://robolake/sub", "gs://robolake", "robolake", "s3://"):
        with pytest.raises(DatasetError, match="s3://BUCKET"):
            bucket_from_url(bad)
    base = Endpoints("k:9092", "http://127.0.0.1:9000", "ak", "sk", s3_bucket="a")
    assert endpoints_for_url("s3://b", base).s3_bucket == "b"
    assert endpoints_for_url(None, base).s3_bucket == "a"
