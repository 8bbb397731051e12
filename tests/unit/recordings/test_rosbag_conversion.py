"""ROS 2 bags -> episodes: the fixture bags (written with rosbags' Writer) convert into chunks the
contract accepts, the same content is the same episode, and bad input fails before any upload."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from fixtures.arm_bag import EXPECTED, FIELDS, converted_rows
from fixtures.arm_bag import ROS2 as FIXTURES
from robolake.episode.chunks import split_into_chunks, validate_chunk
from robolake.episode.ids import is_owned_by, parse_timestamp_ns
from robolake.episode.manifest import parse_manifest
from robolake.recordings import CorruptRecording, RecordingError, prepare
from robolake.recordings.rosbag import locate_mcap_damage


@pytest.mark.parametrize("name", ["arm_bag", "arm.mcap"])
def test_a_bag_converts_into_chunks_the_contract_accepts(name: str) -> None:
    recording = prepare(FIXTURES / name, fields=FIELDS)
    manifest = parse_manifest(recording.manifest)
    declared = {d.name: (d.stream_type.name, d) for d in manifest.streams}
    assert {k: v[0] for k, v in declared.items()} == {k: v[0] for k, v in EXPECTED.items()}
    tables = converted_rows(recording)
    assert {k: t.num_rows for k, t in tables.items()} == {k: v[1] for k, v in EXPECTED.items()}
    for stream, table in tables.items():
        assert pa.compute.all(pa.compute.greater_equal(table["t_ns"][1:], table["t_ns"][:-1]))
        for chunk in split_into_chunks(table, declared[stream][1].stream_type, 64 * 1024):
            validate_chunk(chunk, manifest, stream)  # raises ContractViolation if not
    joints = manifest.stream("joint_states")
    assert joints.elements is not None
    assert list(joints.elements)[:2] == ["shoulder_pan", "shoulder_lift"]
    camera = manifest.stream("camera_color_image_raw").camera
    assert camera is not None
    assert (camera.width, camera.height) == (32, 24)
    # header.stamp wins: the first joint sample is at the recording's start, not its log time
    assert tables["joint_states"]["t_ns"][0].as_py() == parse_timestamp_ns("2026-03-01T09:30:00Z")
    assert tables["joint_states"]["effort"].null_count == 100  # empty effort arrays -> null
    assert tables["camera_color_image_raw_compressed"]["encoding"][0].as_py() == "jpeg"
    raw = tables["camera_color_image_raw"]
    assert raw["encoding"][0].as_py() == "raw"
    assert len(raw["data"][0].as_py()) == 32 * 24 * 3
    report = recording.report()
    assert report["streams"]["instruction"]["log_time_rows"] == 3  # String has no header


def test_unmapped_topics_are_listed_in_the_report() -> None:
    report = prepare(FIXTURES / "arm.mcap", fields=FIELDS).report()
    assert report["unmapped_topics"] == [
        {
            "topic": "/battery",
            "ros_type": "sensor_msgs/msg/BatteryState",
            "messages": 3,
            "reason": "no converter for sensor_msgs/msg/BatteryState",
        }
    ]


def test_the_same_content_is_the_same_episode(tmp_path: Path) -> None:
    first = prepare(FIXTURES / "arm_bag", fields=FIELDS)
    renamed = tmp_path / "whatever_2026.mcap"
    shutil.copyfile(FIXTURES / "arm.mcap", renamed)
    again = prepare(renamed, fields=FIELDS)
    assert again.manifest == first.manifest  # same bytes: the collector's repeat rule
    episode_id = parse_manifest(first.manifest).episode_id
    assert is_owned_by(episode_id, "rig-7")
    other_device = prepare(renamed, fields={**FIELDS, "device_id": "rig-8"})
    assert parse_manifest(other_device.manifest).episode_id != episode_id


def test_a_truncated_bag_names_the_offset_and_uploads_nothing() -> None:
    path = FIXTURES / "arm_truncated.mcap"
    with pytest.raises(CorruptRecording, match=r"truncated at byte 110495: the Chunk record at"):
        prepare(path, fields=FIELDS)
    assert locate_mcap_damage(FIXTURES / "arm.mcap") is None


def test_a_damaged_record_length_is_refused_though_the_index_still_reads(tmp_path: Path) -> None:
    # rosbags reads through the summary's chunk index, so it would decode this file; the
    # framing walk before decoding refuses it and names the record.
    data = bytearray((FIXTURES / "arm.mcap").read_bytes())
    chunk_at = 43  # the first Chunk record, after the magic and the Header record
    assert data[chunk_at] == 0x06
    data[chunk_at + 1 : chunk_at + 9] = (2**40).to_bytes(8, "little")  # a length past the end
    broken = tmp_path / "broken.mcap"
    broken.write_bytes(bytes(data))
    with pytest.raises(CorruptRecording, match=r"the Chunk record at byte 43 needs 1099511627776"):
        prepare(broken, fields=FIELDS)


def test_damaged_bytes_inside_a_chunk_name_the_byte(tmp_path: Path) -> None:
    data = bytearray((FIXTURES / "arm.mcap").read_bytes())
    for i in range(5000, 5040):  # inside the first chunk's records (it ends at byte 150516)
        data[i] ^= 0xFF
    broken = tmp_path / "broken.mcap"
    broken.write_bytes(bytes(data))
    with pytest.raises(CorruptRecording) as caught:
        prepare(broken, fields=FIELDS)
    message = str(caught.value)
    found = re.search(
        r"byte (\d+): opcode 0x[0-9a-f]{2} cannot be inside the Chunk record at byte 43", message
    )
    assert found, message
    assert 5000 <= int(found.group(1)) < 5040  # the damaged record header is where it says
    assert "nothing was uploaded" in message


def test_resuming_skips_the_rows_already_spooled() -> None:
    recording = prepare(FIXTURES / "arm.mcap", fields=FIELDS)
    full = converted_rows(recording)["joint_states"]
    rest = converted_rows(recording, {"joint_states": 30, "instruction": 3})
    assert rest["joint_states"].num_rows == 70
    assert rest["joint_states"]["t_ns"][0] == full["t_ns"][30]
    assert "instruction" not in rest


def test_fields_a_bag_cannot_know_come_from_flags_or_a_sidecar(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match=r"scene \(--scene\)"):
        prepare(FIXTURES / "arm.mcap", fields={**FIELDS, "scene": None})
    bag = tmp_path / "take.mcap"
    shutil.copyfile(FIXTURES / "arm.mcap", bag)
    sidecar = tmp_path / "take.mcap.robolake.json"
    sidecar.write_text('{"scene": "home", "task": "fold the towel", "tags": ["b", "a"]}')
    recording = prepare(bag, fields={**FIELDS, "scene": None, "task": None})
    manifest = parse_manifest(recording.manifest)
    assert (manifest.scene, manifest.task) == ("home", "fold the towel")
    sidecar.write_text('{"scene": "moon"}')
    with pytest.raises(Exception, match="scene"):  # the contract's check: ContractViolation
        prepare(bag, fields={**FIELDS, "scene": None})
    sidecar.write_text('{"episode_id": "x"}')
    with pytest.raises(RecordingError, match="unknown field"):
        prepare(bag, fields=FIELDS)


def test_a_path_that_is_no_bag_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(RecordingError, match="not a ROS 2 bag"):
        prepare(tmp_path / "notes.txt", fields=FIELDS)


def test_memory_stays_bounded_by_batches() -> None:
    recording = prepare(FIXTURES / "arm.mcap", fields=FIELDS)
    sizes = [t.num_rows for _, t in recording.batches()]
    assert max(sizes) <= 2048
    assert np.sum(sizes) == sum(v[1] for v in EXPECTED.values())
