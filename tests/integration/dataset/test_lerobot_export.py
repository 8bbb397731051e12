"""LeRobot v3.0 export of the pipeline's dataset: loads with Hugging Face ``datasets``, frame
counts and statistics match the source, cameras are MP4s with one frame per exported frame."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dataset_harness import ProducedDataset

from robolake.dataset import EpisodeFilter, RobolakeDataset, align_streams
from robolake.dataset.lerobot_export import ExportOptions, export_lerobot
from robolake.dataset.video_encoding import count_frames

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub: everything here is local
datasets = pytest.importorskip("datasets")
pytest.importorskip("av")

FPS = 15


@pytest.fixture(scope="module")
def exported(produced: ProducedDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = RobolakeDataset.open(produced.url, endpoints=produced.endpoints)
    out = tmp_path_factory.mktemp("lerobot") / "export"
    export_lerobot(data, out, ExportOptions(fps=FPS), EpisodeFilter(complete=True))
    return out


def _source_frames(produced: ProducedDataset, episode_id: str) -> pa.Table:
    """The frames the export must contain, aligned independently from what the device sent."""
    sent = produced.episodes[episode_id].streams
    return align_streams({n: t for n, t in sent.items() if n != "events"}, FPS)


def test_one_dataset_per_robot_type_with_v3_layout(exported: Path) -> None:
    assert sorted(p.name for p in exported.iterdir()) == ["arm_7dof", "humanoid_29dof"]
    root = exported / "humanoid_29dof"
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert info["fps"] == FPS
    assert info["robot_type"] == "humanoid_29dof"
    assert info["total_episodes"] == 4
    assert (root / "data/chunk-000/file-000.parquet").is_file()
    assert (root / "meta/episodes/chunk-000/file-000.parquet").is_file()
    features = info["features"]
    assert features["observation.state"]["shape"] == [29]
    assert features["observation.state"]["names"][0] == "left_hip_pitch"
    assert features["action"]["shape"] == [29]
    assert features["observation.images.cam_head"]["dtype"] == "video"
    assert features["observation.images.cam_head"]["shape"] == [120, 160, 3]
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert key in features


def test_loads_with_hugging_face_datasets_and_counts_match_source(
    exported: Path, produced: ProducedDataset, tmp_path: Path
) -> None:
    for root in exported.iterdir():
        info = json.loads((root / "meta/info.json").read_text())
        files = sorted(str(p) for p in (root / "data").glob("*/*.parquet"))
        frames = datasets.Dataset.from_parquet(files, cache_dir=str(tmp_path / "hf"))
        episodes = datasets.Dataset.from_parquet(
            sorted(str(p) for p in (root / "meta/episodes").glob("*/*.parquet")),
            cache_dir=str(tmp_path / "hf"),
        )
        assert len(frames) == info["total_frames"]
        assert len(episodes) == info["total_episodes"]
        frames.set_format("numpy")
        for row in episodes:
            source = _source_frames(produced, row["robolake/episode_id"])
            assert row["length"] == source.num_rows
            start, end = row["dataset_from_index"], row["dataset_to_index"]
            assert end - start == source.num_rows
            chunk = frames[start:end]
            assert (chunk["episode_index"] == row["episode_index"]).all()
            assert (chunk["frame_index"] == np.arange(source.num_rows)).all()
            np.testing.assert_allclose(chunk["timestamp"], np.arange(source.num_rows) / FPS,
                                       rtol=0, atol=1e-5)  # fmt: skip
            expected = np.stack(source["joint_state.position"].to_numpy(zero_copy_only=False))
            np.testing.assert_array_equal(chunk["observation.state"], expected)
            assert row["tasks"] == [produced.plans[row["robolake/episode_id"]].task]
        tasks = pq.read_table(root / "meta/tasks.parquet").to_pandas()
        assert tasks.index.name == "task"
        assert sorted(tasks["task_index"]) == list(range(info["total_tasks"]))


def test_statistics_match_numpy_over_the_source(exported: Path) -> None:
    root = exported / "humanoid_29dof"
    stats = json.loads((root / "meta/stats.json").read_text())
    data = pq.read_table(sorted((root / "data").glob("*/*.parquet")))
    episodes = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    for key in (
        "observation.state",
        "action",
        "observation.velocity",
        "observation.imu.angular_velocity",
    ):
        values = np.stack(data[key].to_numpy(zero_copy_only=False)).astype(np.float64)
        got = {name: np.asarray(v) for name, v in stats[key].items()}
        assert got["count"].tolist() == [len(values)]
        np.testing.assert_array_equal(got["min"], values.min(axis=0))
        np.testing.assert_array_equal(got["max"], values.max(axis=0))
        np.testing.assert_allclose(got["mean"], values.mean(axis=0), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got["std"], values.std(axis=0), rtol=1e-9, atol=1e-12)
        for q, name in ((0.01, "q01"), (0.1, "q10"), (0.5, "q50"), (0.9, "q90"), (0.99, "q99")):
            np.testing.assert_allclose(got[name], np.quantile(values, q, axis=0), rtol=1e-12)
        # Per episode, against that episode's frames.
        for row in episodes:
            part = values[row["dataset_from_index"] : row["dataset_to_index"]]
            np.testing.assert_allclose(row[f"stats/{key}/mean"], part.mean(axis=0), rtol=1e-9)
            np.testing.assert_allclose(row[f"stats/{key}/q50"], np.median(part, axis=0), rtol=1e-12)
            assert row[f"stats/{key}/count"] == [len(part)]
    camera = stats["observation.images.cam_head"]
    assert np.asarray(camera["mean"]).shape == (3, 1, 1)
    assert 0 <= np.asarray(camera["min"]).min() <= np.asarray(camera["max"]).max() <= 1


def test_videos_hold_one_frame_per_exported_frame(exported: Path) -> None:
    for root in exported.iterdir():
        info = json.loads((root / "meta/info.json").read_text())
        episodes = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
        cameras = [k for k, f in info["features"].items() if f["dtype"] == "video"]
        assert cameras
        for key in cameras:
            videos = sorted((root / "videos" / key).glob("*/*.mp4"))
            counted = [count_frames(p) for p in videos]
            assert sum(c[0] for c in counted) == info["total_frames"]
            height, width, _ = info["features"][key]["shape"]
            assert all((w, h) == (width, height) for _, w, h in counted)
            last = episodes[-1]
            assert last[f"videos/{key}/to_timestamp"] == pytest.approx(info["total_frames"] / FPS)
