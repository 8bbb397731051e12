"""HDF5 episodes (ACT and robomimic layouts) become the contract's streams: types, row counts,
joint values, frames and timestamps exactly; identity from content and device; the mapping
file; slices of frames, never a whole image dataset."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from PIL import Image

from fixtures.arm_bag import converted_rows
from fixtures.hdf5_files import (
    ACT,
    ACT_COMPRESSED,
    ACT_EXPECTED,
    FIELDS,
    ROBOMIMIC,
    ROBOMIMIC_EXPECTED,
    STARTED_AT,
    STARTED_NS,
)
from robolake.episode.chunks import split_into_chunks, validate_chunk
from robolake.episode.manifest import parse_manifest
from robolake.recordings import RecordingError, hdf5, prepare_hdf5


def _one(path: Path, **kw: Any) -> hdf5.Hdf5Recording:
    recordings = prepare_hdf5(path, fields=FIELDS, started_at=STARTED_AT, **kw)
    assert len(recordings) == 1
    return recordings[0]


def test_an_act_episode_becomes_joints_action_and_camera_streams() -> None:
    recording = _one(ACT)
    rows = converted_rows(recording)
    assert {n: (s["type"], s["rows"]) for n, s in recording.report()["streams"].items()} == (
        ACT_EXPECTED
    )
    assert {n: t.num_rows for n, t in rows.items()} == {n: r for n, (_, r) in ACT_EXPECTED.items()}
    manifest = parse_manifest(recording.manifest)
    assert {d.name: d.stream_type.name for d in manifest.streams} == {
        n: t for n, (t, _) in ACT_EXPECTED.items()
    }
    with h5py.File(ACT) as f:
        qpos, qvel, effort = (f[f"observations/{k}"][()] for k in ("qpos", "qvel", "effort"))
        action, frames = f["action"][()], f["observations/images/top"][()]
        assert bool(f.attrs["sim"])
    joints = rows["joints"]
    for column, values in (("position", qpos), ("velocity", qvel), ("effort", effort)):
        got = np.array(joints.column(column).to_pylist(), dtype=np.float32)
        np.testing.assert_array_equal(got, values.astype(np.float32))
    np.testing.assert_array_equal(
        np.array(rows["action"].column("action").to_pylist(), np.float32),
        action.astype(np.float32),
    )
    top = rows["top"].to_pylist()
    assert {(r["encoding"], r["width"], r["height"]) for r in top} == {("raw", 32, 24)}
    assert [r["data"] for r in top] == [frame.tobytes() for frame in frames]
    # 14 generated joint names; ACT's actions are joint targets, so they share them.
    joint_names = manifest.stream("joints").elements
    assert joint_names is not None
    assert list(joint_names) == [f"joint_{i}" for i in range(14)]
    assert manifest.stream("action").elements == joint_names
    decl = manifest.stream("joints")
    assert decl.rate_hz == 50.0
    assert recording.report()["unmapped_datasets"] == []


def test_act_rows_are_at_the_frame_rate_from_the_start_time() -> None:
    recording = _one(ACT)
    for name, table in converted_rows(recording).items():
        assert table.column("t_ns").to_pylist() == [
            STARTED_NS + i * 20_000_000 for i in range(40)
        ], name
    manifest = json.loads(recording.manifest)
    assert manifest["started_at"] == "2026-03-01T09:30:00.000000000Z"
    assert manifest["ended_at"] == "2026-03-01T09:30:00.780000000Z"
    faster = _one(ACT, rate_hz=100.0)
    t_ns = converted_rows(faster)["joints"].column("t_ns").to_pylist()
    assert t_ns[:3] == [STARTED_NS, STARTED_NS + 10_000_000, STARTED_NS + 20_000_000]


def test_without_a_start_time_the_episode_ends_at_the_files_modification_time(
    tmp_path: Path,
) -> None:
    copy = tmp_path / "ep.hdf5"
    shutil.copyfile(ACT, copy)
    os.utime(copy, ns=(STARTED_NS, STARTED_NS))
    recording = prepare_hdf5(copy, fields=FIELDS)[0]
    t_ns = converted_rows(recording)["joints"].column("t_ns").to_pylist()
    assert t_ns[-1] == STARTED_NS
    assert t_ns[0] == STARTED_NS - 39 * 20_000_000
    assert "modification time" in recording.report()["time_from"]


def test_joint_names_come_from_the_flag_and_must_fit() -> None:
    names = [f"{side}_{j}" for side in ("left", "right") for j in range(7)]
    manifest = parse_manifest(_one(ACT, joint_names=names).manifest)
    assert list(manifest.stream("joints").elements or ()) == names
    with pytest.raises(
        RecordingError, match=r"dataset /observations/qpos has 14 values .* 3 joint"
    ):
        _one(ACT, joint_names=["a", "b", "c"])


def test_compressed_act_frames_are_the_stored_jpeg_bytes() -> None:
    recording = _one(ACT_COMPRESSED)
    rows = converted_rows(recording)
    assert set(rows) == {"joints", "action", "top", "wrist"}
    with h5py.File(ACT_COMPRESSED) as f:
        lengths = f["compress_len"][()].astype(int)
        padded = {cam: f[f"observations/images/{cam}"][()] for cam in ("top", "wrist")}
    for i, cam in enumerate(("top", "wrist")):
        table = rows[cam].to_pylist()
        assert [r["data"] for r in table] == [
            bytes(padded[cam][t, : lengths[i, t]]) for t in range(40)
        ]
        assert {(r["encoding"], r["width"], r["height"]) for r in table} == {("jpeg", 32, 24)}
        with Image.open(io.BytesIO(table[0]["data"])) as image:
            assert image.size == (32, 24)
    assert rows["joints"].column("effort").null_count == 40  # no /observations/effort
    assert [u["dataset"] for u in recording.report()["unmapped_datasets"]] == ["/compress_len"]


def test_a_robomimic_file_is_one_episode_per_demo() -> None:
    recordings = prepare_hdf5(ROBOMIMIC, fields=FIELDS, started_at=STARTED_AT)
    assert [r.report()["group"] for r in recordings] == ["/data/demo_0", "/data/demo_1"]
    first, second = recordings
    assert first.episode_id != second.episode_id
    assert {n: (s["type"], s["rows"]) for n, s in first.report()["streams"].items()} == (
        ROBOMIMIC_EXPECTED
    )
    assert {n: t.num_rows for n, t in converted_rows(second).items()} == {
        n: 20 for n in ROBOMIMIC_EXPECTED
    }
    # env_args' control_freq gives the rate: 20 Hz, 50 ms apart.
    t_ns = converted_rows(first)["robot0_joints"].column("t_ns").to_pylist()
    assert t_ns[:2] == [STARTED_NS, STARTED_NS + 50_000_000]
    with h5py.File(ROBOMIMIC) as f:
        pos = f["data/demo_1/obs/robot0_joint_pos"][()]
    got = converted_rows(second)["robot0_joints"].column("position").to_pylist()
    np.testing.assert_array_equal(np.array(got, np.float32), pos.astype(np.float32))
    unmapped = {u["dataset"]: u["reason"] for u in first.report()["unmapped_datasets"]}
    assert set(unmapped) == {
        "/data/demo_0/dones",
        "/data/demo_0/rewards",
        "/data/demo_0/states",
        "/data/demo_0/obs/robot0_eef_pos",
    }
    manifest = parse_manifest(first.manifest)
    actions = manifest.stream("actions").elements
    assert actions is not None
    assert list(actions) == [f"action_{i}" for i in range(7)]
    assert (manifest.stream("actions").metadata or {})["env_name"] == "Lift"
    only = prepare_hdf5(ROBOMIMIC, fields=FIELDS, started_at=STARTED_AT, demo=1)
    assert [r.episode_id for r in only] == [second.episode_id]
    with pytest.raises(RecordingError, match=r"there is no /data/demo_5 \(the file has demo_0"):
        prepare_hdf5(ROBOMIMIC, fields=FIELDS, demo=5)


def test_the_same_file_renamed_is_the_same_episode(tmp_path: Path) -> None:
    renamed = tmp_path / "aloha-2_take-7.h5"
    shutil.copyfile(ACT, renamed)
    original, copy = _one(ACT), _one(renamed)
    assert copy.manifest == original.manifest  # the same bytes: a repeated registration
    assert copy.report()["content_sha256"] == original.report()["content_sha256"]
    other_device = prepare_hdf5(
        ACT, fields={**FIELDS, "device_id": "aloha-3"}, started_at=STARTED_AT
    )[0]
    assert other_device.episode_id != original.episode_id
    # mv keeps the modification time, so without --started-at a moved file is the same too.
    moved = tmp_path / "moved.hdf5"
    shutil.copy2(ACT, tmp_path / "a.hdf5")
    before = prepare_hdf5(tmp_path / "a.hdf5", fields=FIELDS)[0].episode_id
    (tmp_path / "a.hdf5").rename(moved)
    assert prepare_hdf5(moved, fields=FIELDS)[0].episode_id == before


def test_the_sidecar_gives_fields_rate_start_and_joint_names(tmp_path: Path) -> None:
    copy = tmp_path / "ep.hdf5"
    shutil.copyfile(ACT, copy)
    names = [f"j{i}" for i in range(14)]
    sidecar = {**FIELDS, "rate_hz": 25, "started_at": STARTED_AT, "joint_names": names}
    (tmp_path / "ep.hdf5.robolake.json").write_text(json.dumps(sidecar))
    recording = prepare_hdf5(copy, fields={})[0]
    manifest = parse_manifest(recording.manifest)
    assert manifest.device_id == "aloha-2"
    assert list(manifest.stream("joints").elements or ()) == names
    t_ns = converted_rows(recording)["joints"].column("t_ns").to_pylist()
    assert t_ns[:2] == [STARTED_NS, STARTED_NS + 40_000_000]


def test_a_mapping_file_renames_ignores_and_maps_other_datasets(tmp_path: Path) -> None:
    mapping = tmp_path / "map.yaml"
    mapping.write_text(
        "version: 1\nrate_hz: 10\ndatasets:\n"
        "  obs/robot0_joint_pos: {stream: arm}\n"
        "  obs/robot0_joint_vel: {stream: arm}\n"
        "  obs/robot0_eef_pos: {stream: eef_target, type: action}\n"
        "  obs/agentview_image: ignore\n"
        "  obs/robot0_gripper_qpos: {stream: gripper}\n"
    )
    recording = prepare_hdf5(
        ROBOMIMIC, fields=FIELDS, mapping=mapping, started_at=STARTED_AT, demo=0
    )[0]
    report = recording.report()
    assert {n: s["type"] for n, s in report["streams"].items()} == {
        "arm": "joint_state",
        "eef_target": "action",
        "actions": "action",
    }
    assert report["mapped_datasets_not_in_file"] == ["/data/demo_0/obs/robot0_gripper_qpos"]
    reasons = {u["dataset"]: u["reason"] for u in report["unmapped_datasets"]}
    assert reasons["/data/demo_0/obs/agentview_image"] == "ignored by the mapping file"
    rows = converted_rows(recording)
    assert rows["arm"].column("velocity").null_count == 0
    assert rows["eef_target"].column("t_ns").to_pylist()[1] == STARTED_NS + 100_000_000
    strict = tmp_path / "strict.json"
    strict.write_text(json.dumps({"version": 1, "map_defaults": False,
                                  "datasets": {"/action": {"stream": "cmd"}}}))  # fmt: skip
    only = _one(ACT, mapping=strict)
    assert set(only.report()["streams"]) == {"cmd"}
    assert len(only.report()["unmapped_datasets"]) == 4


def test_rows_are_read_in_slices_never_a_whole_image_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = tmp_path / "big.hdf5"
    with h5py.File(big, "w") as f:
        f.create_dataset("observations/qpos", data=np.zeros((60, 2)))
        f.create_dataset("observations/images/cam", data=np.zeros((60, 480, 640, 3), np.uint8),
                         chunks=(1, 480, 640, 3))  # fmt: skip
    reads: list[tuple[str, int]] = []
    original = hdf5._read

    def spy(ds: Any, full: str, start: int, stop: int) -> Any:
        block = original(ds, full, start, stop)
        reads.append((full, block.nbytes))
        return block

    monkeypatch.setattr(hdf5, "_read", spy)
    recording = _one(big)
    tables = [t for name, t in recording.batches() if name == "cam"]
    assert sum(t.num_rows for t in tables) == 60
    image_reads = [n for full, n in reads if full.endswith("/cam")]
    assert len(image_reads) > 2 * 60 * 921_600 // hdf5.SLICE_BYTES  # both passes, in slices
    assert max(image_reads) <= hdf5.SLICE_BYTES


def test_batches_skip_the_rows_an_interrupted_upload_spooled() -> None:
    recording = _one(ACT)
    rows = converted_rows(recording, {"top": 25, "joints": 40})
    assert "joints" not in rows
    assert rows["top"].num_rows == 15
    assert rows["top"].column("t_ns")[0].as_py() == STARTED_NS + 25 * 20_000_000
    assert rows["action"].num_rows == 40


def test_the_rows_pass_the_contracts_chunk_checks() -> None:
    recording = _one(ACT_COMPRESSED)
    manifest = parse_manifest(recording.manifest)
    checked = 0
    for name, table in converted_rows(recording).items():
        decl = manifest.stream(name)
        for chunk in split_into_chunks(table, decl.stream_type, 64 * 1024):
            validate_chunk(chunk, manifest, name)
            checked += 1
    assert checked >= 4
