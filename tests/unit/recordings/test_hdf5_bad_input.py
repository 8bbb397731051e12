"""Bad HDF5 files and mapping files fail before anything is registered or spooled, each with a
message naming the dataset or key; the CLI prints one ``robolake: error:`` line.

Each test writes its own small ACT-layout file with h5py with one thing wrong.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from PIL import Image

from fixtures.hdf5_files import ACT, ACT_COMPRESSED, FIELDS, ROBOMIMIC, STARTED_AT
from robolake import cli
from robolake.capture.spool import Spool
from robolake.recordings import CorruptRecording, MappingError, RecordingError, prepare_hdf5
from robolake.recordings.mapping import parse_dataset_mapping


def _act(path: Path, *, steps: int = 10, frames: int | None = None, **override: Any) -> Path:
    """A small ACT episode; ``override`` replaces (or, given None, drops) datasets by path."""
    datasets: dict[str, Any] = {
        "observations/qpos": np.zeros((steps, 3)),
        "observations/qvel": np.zeros((steps, 3)),
        "observations/images/top": np.zeros((steps if frames is None else frames, 6, 8, 3),
                                            np.uint8),
        "action": np.zeros((steps, 3)),
    }  # fmt: skip
    for key, value in override.items():
        datasets[key.replace("__", "/")] = value
    with h5py.File(path, "w") as f:
        for key, value in datasets.items():
            if value is not None:
                f.create_dataset(key, data=value)
    return path


def _prepare(path: Path, **kw: Any) -> Any:
    return prepare_hdf5(path, fields=FIELDS, started_at=STARTED_AT, **kw)


def test_a_file_that_is_not_hdf5_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "episode.hdf5"
    fake.write_bytes(b"qpos,qvel\n0,0\n")
    with pytest.raises(CorruptRecording, match=r"episode.hdf5: not an HDF5 file"):
        _prepare(fake)


def test_a_truncated_file_is_refused(tmp_path: Path) -> None:
    cut = tmp_path / "cut.hdf5"
    cut.write_bytes(ACT.read_bytes()[: ACT.stat().st_size * 2 // 3])
    with pytest.raises(CorruptRecording, match=r"cut.hdf5.*truncated"):
        _prepare(cut)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            {"observations__qpos": np.zeros((10, 3), np.int32)},
            r"dataset /observations/qpos: shape \(10, 3\) int32, expected T x N floats",
        ),
        (
            {"observations__qpos": np.zeros(10)},
            r"dataset /observations/qpos: shape \(10,\) float64, expected T x N floats",
        ),
        (
            {"observations__images__top": np.zeros((10, 6, 8), np.uint8)},
            r"dataset /observations/images/top: shape \(10, 6, 8\) uint8 is not a camera",
        ),
        (
            {"observations__images__top": np.zeros((10, 6, 8, 3), np.float32)},
            r"dataset /observations/images/top: shape \(10, 6, 8, 3\) float32 is not a camera",
        ),
        (
            {"observations__qvel": np.zeros((10, 4))},
            r"dataset /observations/qvel has 4 values per row, but the stream 'joints' has 3",
        ),
        (
            {"action": np.zeros((10, 2), np.float16) + np.float16(np.nan)},
            r"dataset /action, row 0: a value that is NaN or infinite",
        ),
    ],
)
def test_a_dataset_of_the_wrong_shape_or_dtype_is_named(
    tmp_path: Path, override: dict[str, Any], expected: str
) -> None:
    with pytest.raises(RecordingError, match=expected):
        _prepare(_act(tmp_path / "bad.hdf5", **override))


def test_a_camera_with_fewer_frames_than_qpos_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        RecordingError,
        match=r"dataset /observations/images/top has 9 rows but /observations/qpos has 10",
    ):
        _prepare(_act(tmp_path / "short.hdf5", frames=9))


def test_a_compressed_frame_that_is_no_jpeg_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.hdf5"
    shutil.copyfile(ACT_COMPRESSED, bad)
    with h5py.File(bad, "r+") as f:
        f["observations/images/wrist"][3, :4] = np.frombuffer(b"GIF8", np.uint8)
    with pytest.raises(RecordingError, match=r"dataset /observations/images/wrist, frame 3: the"):
        _prepare(bad)


def test_compressed_frames_that_disagree_with_compress_len_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.hdf5"
    shutil.copyfile(ACT_COMPRESSED, bad)
    with h5py.File(bad, "r+") as f:
        f["compress_len"][0, 5] += 1
        f["compress_len"][1, 5] += 1
    with pytest.raises(RecordingError, match=r"/observations/images/top: .*match no row of"):
        _prepare(bad)


def test_a_frame_over_the_contracts_size_is_refused(tmp_path: Path) -> None:
    out = io.BytesIO()
    Image.new("RGB", (5000, 2)).save(out, format="PNG")
    frames = np.zeros((10, len(out.getvalue())), np.uint8)
    frames[:] = np.frombuffer(out.getvalue(), np.uint8)
    big = _act(tmp_path / "big.hdf5", observations__images__top=frames)
    with pytest.raises(RecordingError, match=r"images/top, frame 0: a 5000x2 png, over the"):
        _prepare(big)


def test_a_file_of_neither_layout_says_what_it_holds(tmp_path: Path) -> None:
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("lidar/points", data=np.zeros((5, 3)))
    with pytest.raises(RecordingError, match=r"no dataset maps.*/lidar/points \[5, 3\] float64"):
        _prepare(other)


def test_demo_is_for_robomimic_files() -> None:
    with pytest.raises(RecordingError, match=r"--demo applies to robomimic files"):
        _prepare(ACT, demo=0)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"version": 2}, r"'version' must be 1 \(found 2\)"),
        ({"version": 1, "topics": {}}, r"'topics' is for ROS 2 bags; an HDF5 file maps 'datasets'"),
        ({"version": 1, "rate_hz": 0}, r"'rate_hz' must be a positive number"),
        ({"version": 1, "datasets": {"/action": {"type": "pose"}}}, r"type 'pose' is not one"),
        ({"version": 1, "datasets": {"/action": {"colour": 1}}}, r"unknown key\(s\) \['colour'\]"),
        (
            {"version": 1, "datasets": {"/x": {"type": "action", "field": "velocity"}}},
            r"dataset '/x': field 'velocity' must be one of action",
        ),
        ({"version": 1, "datasets": {"/x": {"stream": "Bad-Name"}}}, r"is not a stream name"),
        ({"version": 1, "joint_names": ["a", "a"]}, r"'joint_names' must be a list of distinct"),
    ],
)
def test_a_malformed_mapping_names_the_key(document: Any, expected: str) -> None:
    with pytest.raises(MappingError, match=expected):
        parse_dataset_mapping(document, source="map.yaml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "version: 1\ndatasets:\n  /observations/qvel: {stream: joints, field: position}\n",
            r"datasets /observations/qpos and /observations/qvel both become field 'position'",
        ),
        (
            "version: 1\ndatasets:\n  /action: {stream: top}\n",
            r"stream 'top' would be both action \(from /action\) and image",
        ),
        (
            "version: 1\ndatasets:\n  /extra: {stream: extra}\n",
            r"dataset /extra has no built-in stream type; give its 'type'",
        ),
        (
            "version: 1\ndatasets:\n  /observations/qpos: {joint_names: [a, b]}\n",
            r"dataset /observations/qpos has 3 values per row but 2 joint names came from",
        ),
        (
            "version: 1\ndatasets:\n  /observations/qvel: {stream: vel}\n",
            r"joint stream 'vel' has velocity but no position dataset",
        ),
    ],
)
def test_a_mapping_that_does_not_fit_the_file_is_refused(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = _act(tmp_path / "ep.hdf5", extra=np.zeros((10, 2)))
    mapping = tmp_path / "map.yaml"
    mapping.write_text(text)
    with pytest.raises(MappingError if "values per row" not in expected else RecordingError,
                       match=expected):  # fmt: skip
        _prepare(path, mapping=mapping)


def test_bad_flags_and_sidecars_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match=r"started_at 'yesterday' is not an RFC 3339"):
        prepare_hdf5(ACT, fields=FIELDS, started_at="yesterday")
    with pytest.raises(RecordingError, match=r"frame rate must be a positive number"):
        prepare_hdf5(ACT, fields=FIELDS, rate_hz=-1)
    copy = tmp_path / "ep.h5"
    shutil.copyfile(ROBOMIMIC, copy)
    (tmp_path / "ep.h5.robolake.json").write_text('{"fps": 30}')
    with pytest.raises(RecordingError, match=r"unknown field\(s\) \['fps'\].*rate_hz"):
        prepare_hdf5(copy, fields=FIELDS)
    with pytest.raises(RecordingError, match=r"\(--robot-type\).*which an HDF5 file cannot know"):
        prepare_hdf5(ACT, fields={**FIELDS, "robot_type": None}, started_at=STARTED_AT)


def _truncated(tmp_path: Path) -> Path:
    cut = tmp_path / "cut.hdf5"
    cut.write_bytes(ACT.read_bytes()[:50_000])
    return cut


def _wrong_dtype(tmp_path: Path) -> Path:
    return _act(tmp_path / "ep.hdf5", observations__qpos=np.zeros((10, 3), np.int64))


def _mismatched(tmp_path: Path) -> Path:
    return _act(tmp_path / "ep.hdf5", frames=7)


def _bad_mapping(tmp_path: Path) -> Path:
    (tmp_path / "map.yaml").write_text("version: 1\ntopics: {}\n")
    return ACT


def _not_hdf5(tmp_path: Path) -> Path:
    path = tmp_path / "ep.h5"
    path.write_text("not hdf5")
    return path


def _frame_over_the_chunk_limit(tmp_path: Path) -> Path:
    return _act(tmp_path / "ep.hdf5", observations__images__top=np.zeros((10, 64, 64, 3), "u1"))


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_not_hdf5, "ep.h5: not an HDF5 file (no HDF5 signature)"),
        (_truncated, "cut.hdf5: Unable to synchronously open file (truncated file"),
        (_wrong_dtype, "dataset /observations/qpos: shape (10, 3) int64, expected T x N floats"),
        (_mismatched, "dataset /observations/images/top has 7 rows but /observations/qpos has 10"),
        (_bad_mapping, "'topics' is for ROS 2 bags"),
        (_frame_over_the_chunk_limit, "stream top (/observations/images/top) has a row of 12288"),
    ],
)
def test_the_cli_prints_one_line_and_spools_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make: Callable[[Path], Path],
    expected: str,
) -> None:
    path = make(tmp_path)
    argv = ["upload", str(path), "--token", "t0k", "--spool", str(tmp_path / "spool")]
    argv += ["--collector", "http://127.0.0.1:9"]  # never reached: the file fails first
    argv += ["--max-chunk-bytes", "8192", "--started-at", STARTED_AT]
    for flag, key in [("--device-id", "device_id"), ("--capture-point", "capture_point_id"),
                      ("--robot-type", "robot_type"), ("--scene", "scene"), ("--task", "task"),
                      ("--operator", "operator")]:  # fmt: skip
        argv += [flag, FIELDS[key]]
    if (tmp_path / "map.yaml").is_file():
        argv += ["--mapping", str(tmp_path / "map.yaml")]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("robolake: error: ")
    assert expected in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert Spool(tmp_path / "spool").episodes() == []  # nothing half-uploaded
