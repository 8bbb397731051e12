"""The exported statistics have the shapes LeRobot's own tools require: an outside check found
``lerobot-edit-dataset`` (0.6.1) refusing camera ``count`` stored channel-first, (3, 1, 1)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from memory_lake import MemoryLake, small_episode

from robolake.dataset.lerobot_export import ExportOptions, export_lerobot

pytest.importorskip("av")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lake = MemoryLake([small_episode(1), small_episode(2, task="insert the peg")])
    out = tmp_path_factory.mktemp("lerobot") / "export"
    (result,) = export_lerobot(lake.as_dataset(), out, ExportOptions(fps=15),
                               episodes=lake.infos())  # fmt: skip
    return result.root


def test_count_is_shape_one_for_every_feature_in_stats_json(exported: Path) -> None:
    stats = json.loads((exported / "meta/stats.json").read_text())
    assert "observation.images.cam_head" in stats
    for key, values in stats.items():
        assert np.asarray(values["count"]).shape == (1,), key


def test_count_is_shape_one_in_the_episodes_table(exported: Path) -> None:
    rows = pq.read_table(exported / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    counts = [k for k in rows[0] if k.startswith("stats/") and k.endswith("/count")]
    assert "stats/observation.images.cam_head/count" in counts
    for row in rows:
        for key in counts:
            assert np.asarray(row[key]).shape == (1,), key
            if "images" not in key:  # a camera counts its sampled pixels, not frames
                assert row[key] == [row["length"]], key


def test_camera_moments_stay_channel_first(exported: Path) -> None:
    stats = json.loads((exported / "meta/stats.json").read_text())["observation.images.cam_head"]
    for name in ("min", "max", "mean", "std", "q01", "q50", "q99"):
        assert np.asarray(stats[name]).shape == (3, 1, 1), name
    rows = pq.read_table(exported / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert np.asarray(rows[0]["stats/observation.images.cam_head/mean"]).shape == (3, 1, 1)
