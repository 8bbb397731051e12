"""Bad ROS 2 bags and mapping files fail before anything is registered or spooled, each with a
message that names the topic, message, key or byte -- and the raw Image encodings robolake takes
become the contract's image and depth rows exactly.

The bags are written here, per test, with rosbags' own rosbag2 Writer and the real ROS 2 (Jazzy)
message definitions, so each test controls the one thing that is wrong.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from fixtures.arm_bag import FIELDS, converted_rows
from fixtures.arm_bag import ROS2 as FIXTURES
from robolake import cli
from robolake.capture.spool import Spool
from robolake.episode.chunks import split_into_chunks, validate_chunk
from robolake.episode.manifest import parse_manifest
from robolake.recordings import MappingError, RecordingError, UnsupportedMessage, prepare
from robolake.recordings.mapping import parse_mapping

T0 = 1_772_357_400 * 1_000_000_000
STORE = get_typestore(Stores.ROS2_JAZZY)
GRIPPER = "acme_msgs/msg/GripperState"
STORE.register(get_types_from_msg("float64 opening\nbool grasped\n", GRIPPER))
T = STORE.types

Message = tuple[str, int, object]  # (topic, log_time, message)


def _write(folder: Path, messages: Sequence[Message]) -> Path:
    """A rosbag2 directory holding ``messages`` (in log-time order)."""
    with Writer(folder, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connections: dict[str, Any] = {}
        for topic, ns, msg in sorted(messages, key=lambda m: m[1]):
            msgtype = type(msg).__msgtype__  # type: ignore[attr-defined]
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=STORE)
            writer.write(connections[topic], ns, STORE.serialize_cdr(msg, msgtype))
    return folder


def _header(ns: int) -> object:
    stamp = T["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9)
    return T["std_msgs/msg/Header"](stamp=stamp, frame_id="cam")


def _image(
    ns: int, pixels: np.ndarray[Any, Any], encoding: str, *, step: int | None = None, **kw: Any
) -> object:
    height, width = pixels.shape[:2]
    data = np.ascontiguousarray(pixels).view(np.uint8).reshape(-1)
    row = data.size // height
    return T["sensor_msgs/msg/Image"](
        header=_header(ns),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=kw.get("is_bigendian", 0),
        step=row if step is None else step,
        data=kw.get("data", data),
    )


def _joint(ns: int, names: Sequence[str] = ("a", "b"), stamp: int | None = None) -> object:
    return T["sensor_msgs/msg/JointState"](
        header=_header(ns if stamp is None else stamp),
        name=list(names),
        position=np.arange(len(names), dtype=np.float64),
        velocity=np.zeros(0),
        effort=np.zeros(0),
    )


def _gripper() -> object:
    return T[GRIPPER](opening=0.04, grasped=False)


RNG = np.random.default_rng(7)
RGB = RNG.integers(0, 255, size=(6, 8, 3), dtype=np.uint8)


# -- unknown message types -----------------------------------------------------------------------


def test_a_type_without_converter_is_reported_not_dropped(tmp_path: Path) -> None:
    bag = _write(
        tmp_path / "bag",
        [("/joints", T0 + i, _joint(T0 + i)) for i in range(3)]
        + [("/gripper", T0 + 10 + i, _gripper()) for i in range(4)],
    )
    recording = prepare(bag, fields=FIELDS)
    assert [s["rows"] for s in recording.report()["streams"].values()] == [3]
    assert recording.report()["unmapped_topics"] == [
        {
            "topic": "/gripper",
            "ros_type": GRIPPER,
            "messages": 4,
            "reason": f"no converter for {GRIPPER}",
        }
    ]


def test_mapping_a_topic_of_an_unknown_type_is_a_mapping_error(tmp_path: Path) -> None:
    bag = _write(
        tmp_path / "bag",
        [("/joints", T0, _joint(T0)), ("/gripper", T0 + 1, _gripper())],
    )
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"version": 1, "topics": {"/gripper": {"stream": "grip"}}}))
    with pytest.raises(MappingError, match=rf"/gripper is mapped.*no converter.*{GRIPPER}.*ignore"):
        prepare(bag, fields=FIELDS, mapping=mapping)


def test_a_bag_with_nothing_convertible_says_so(tmp_path: Path) -> None:
    bag = _write(tmp_path / "bag", [("/gripper", T0, _gripper())])
    with pytest.raises(RecordingError, match=rf"no topic maps.*/gripper \({GRIPPER}\).*--mapping"):
        prepare(bag, fields=FIELDS)


# -- images --------------------------------------------------------------------------------------


def test_an_rgb8_frame_whose_data_disagrees_with_its_size_names_the_message(tmp_path: Path) -> None:
    frames = [("/cam/image_raw", T0 + i, _image(T0 + i, RGB, "rgb8")) for i in range(3)]
    short = RGB.reshape(-1)[:-5]  # 5 bytes missing
    frames.append(("/cam/image_raw", T0 + 3, _image(T0 + 3, RGB, "rgb8", data=short)))
    bag = _write(tmp_path / "bag", frames)
    with pytest.raises(
        UnsupportedMessage,
        match=r"/cam/image_raw \(sensor_msgs/msg/Image\), message 3: 139 data bytes do not fit "
        r"8x6 rgb8 with step 24 \(expected step >= 24 and step\*height = 144 bytes\)",
    ):
        prepare(bag, fields=FIELDS)


def test_a_step_too_small_for_the_width_is_refused(tmp_path: Path) -> None:
    bag = _write(
        tmp_path / "bag",
        [("/cam/image_raw", T0, _image(T0, RGB, "rgb8", step=16, data=np.zeros(96, np.uint8)))],
    )
    with pytest.raises(UnsupportedMessage, match=r"message 0: 96 data bytes do not fit 8x6 rgb8"):
        prepare(bag, fields=FIELDS)


def test_an_encoding_robolake_does_not_take_is_refused(tmp_path: Path) -> None:
    yuv = np.zeros((6, 8, 2), np.uint8)
    bag = _write(tmp_path / "bag", [("/cam/image_raw", T0, _image(T0, yuv, "yuv422"))])
    with pytest.raises(UnsupportedMessage, match=r"encoding 'yuv422' is not supported.*ignore"):
        prepare(bag, fields=FIELDS)


def test_a_topic_that_changes_from_colour_to_depth_is_refused(tmp_path: Path) -> None:
    depth = np.ones((6, 8), np.uint16)
    bag = _write(
        tmp_path / "bag",
        [
            ("/cam/image_raw", T0, _image(T0, RGB, "rgb8")),
            ("/cam/image_raw", T0 + 1, _image(T0 + 1, depth, "16UC1")),
        ],
    )
    with pytest.raises(UnsupportedMessage, match=r"message 1: encoding '16UC1' in a image stream"):
        prepare(bag, fields=FIELDS)


def test_raw_encodings_become_the_contracts_image_and_depth_rows(tmp_path: Path) -> None:
    mono = RNG.integers(0, 255, size=(6, 8), dtype=np.uint8)
    depth = RNG.integers(0, 60000, size=(6, 8), dtype=np.uint16)
    depth_f = RNG.random((6, 8), dtype=np.float32)
    bag = _write(
        tmp_path / "bag",
        [
            ("/bgr/image_raw", T0, _image(T0, RGB[:, :, ::-1], "bgr8")),
            ("/mono/image_raw", T0, _image(T0, mono, "mono8")),
            ("/depth/image_raw", T0, _image(T0, depth, "16UC1")),
            ("/bedepth/image_raw", T0, _image(T0, depth.byteswap(), "16UC1", is_bigendian=1)),
            ("/fdepth/image_raw", T0, _image(T0, depth_f, "32FC1")),
        ],
    )
    recording = prepare(bag, fields=FIELDS)
    manifest = parse_manifest(recording.manifest)
    rows = converted_rows(recording)
    types = {d.name: d.stream_type.name for d in manifest.streams}
    assert types == {
        "bgr_image_raw": "image",
        "mono_image_raw": "image",
        "depth_image_raw": "depth_image",
        "bedepth_image_raw": "depth_image",
        "fdepth_image_raw": "depth_image",
    }
    for name, table in rows.items():
        decl = manifest.stream(name)
        for chunk in split_into_chunks(table, decl.stream_type, 64 * 1024):
            validate_chunk(chunk, manifest, name)
    bgr = rows["bgr_image_raw"].to_pylist()[0]
    assert (bgr["encoding"], bgr["width"], bgr["height"]) == ("raw", 8, 6)
    assert bgr["data"] == RGB.tobytes()  # channels swapped back to RGB
    png = rows["mono_image_raw"].to_pylist()[0]
    assert png["encoding"] == "png"
    with PILImage.open(io.BytesIO(png["data"])) as decoded:
        assert np.array_equal(np.asarray(decoded), mono)
    for name in ("depth_image_raw", "bedepth_image_raw"):
        row = rows[name].to_pylist()[0]
        assert row["encoding"] == "raw16"
        assert row["depth_scale"] == pytest.approx(0.001)
        assert np.array_equal(np.frombuffer(row["data"], "<u2").reshape(6, 8), depth)
    fdepth = rows["fdepth_image_raw"].to_pylist()[0]
    assert fdepth["encoding"] == "raw32f"
    assert np.array_equal(np.frombuffer(fdepth["data"], "<f4").reshape(6, 8), depth_f)


def test_row_padding_is_dropped_from_raw_frames(tmp_path: Path) -> None:
    padded = np.zeros((6, 32), np.uint8)  # step 32 for 8 rgb8 pixels (24 bytes) per row
    padded[:, :24] = RGB.reshape(6, 24)
    msg = T["sensor_msgs/msg/Image"](
        header=_header(T0),
        height=6,
        width=8,
        encoding="rgb8",
        is_bigendian=0,
        step=32,
        data=padded.reshape(-1),
    )
    recording = prepare(_write(tmp_path / "bag", [("/cam/image_raw", T0, msg)]), fields=FIELDS)
    assert converted_rows(recording)["cam_image_raw"]["data"][0].as_py() == RGB.tobytes()


def test_compressed_bytes_that_are_no_jpeg_or_png_are_refused(tmp_path: Path) -> None:
    msg = T["sensor_msgs/msg/CompressedImage"](
        header=_header(T0), format="h264", data=np.frombuffer(b"\x00\x00\x00\x01gd", np.uint8)
    )
    bag = _write(tmp_path / "bag", [("/cam/image_raw/compressed", T0, msg)])
    with pytest.raises(UnsupportedMessage, match=r"format 'h264': the bytes are neither JPEG nor"):
        prepare(bag, fields=FIELDS)


# -- mapping files -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ([1, 2], r"the top level must be a mapping"),
        ({"topics": {}}, r"'version' must be 1 \(found None\)"),
        ({"version": 1, "streams": {}}, r"unknown key\(s\) \['streams'\]"),
        ({"version": 1, "time": "wall"}, r"'time' must be 'header' or 'log_time'"),
        ({"version": 1, "topics": {"joints": {}}}, r"topic 'joints': a topic name starts with"),
        ({"version": 1, "topics": {"/j": {"stream": "Arm-1"}}}, r"stream 'Arm-1' is not a stream"),
        ({"version": 1, "topics": {"/j": {"strem": "a"}}}, r"unknown key\(s\) \['strem'\]"),
        ({"version": 1, "topics": {"/j": {"kind": "shout"}}}, r"kind 'shout' is not an event kind"),
        ({"version": 1, "topics": {"/j": {"depth_scale": 0}}}, r"depth_scale must be a positive"),
        ({"version": 1, "topics": {"/j": "skip"}}, r"an entry is 'ignore' or a mapping"),
    ],
)
def test_a_malformed_mapping_names_the_key(document: Any, expected: str) -> None:
    with pytest.raises(MappingError, match=expected):
        parse_mapping(document, source="m.yaml")


def test_a_mapping_file_that_is_no_yaml_or_the_sidecar_is_refused(tmp_path: Path) -> None:
    bag = FIXTURES / "arm.mcap"
    broken = tmp_path / "map.yaml"
    broken.write_text("version: 1\ntopics: {/joint_states: [\n")
    with pytest.raises(MappingError, match=r"map.yaml: not valid YAML"):
        prepare(bag, fields=FIELDS, mapping=broken)
    sidecar = tmp_path / "robolake.json"  # the manifest fields given where the mapping goes
    sidecar.write_text(json.dumps({"scene": "lab", "task": "pick"}))
    with pytest.raises(MappingError, match=r"unknown key\(s\) \['scene', 'task'\]"):
        prepare(bag, fields=FIELDS, mapping=sidecar)
    with pytest.raises(MappingError, match=r"cannot read it"):
        prepare(bag, fields=FIELDS, mapping=tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    ("topics", "expected"),
    [
        (
            {"/joint_states": {"stream": "arm"}, "/ee_pose": {"stream": "arm"}},
            r"topics /ee_pose and /joint_states both become stream 'arm'",
        ),
        (
            {"/camera/color/image_raw": {"camera_info": "/cam2/camera_info"}},
            r"names camera_info /cam2/camera_info, which the bag does not have",
        ),
        ({"/joint_states": {"depth_scale": 0.001}}, r"depth_scale applies to raw Image topics"),
        ({"/imu/data": {"kind": "note"}}, r"kind applies to event \(String\) topics"),
    ],
)
def test_a_mapping_that_does_not_fit_the_bag_is_refused(
    tmp_path: Path, topics: dict[str, Any], expected: str
) -> None:
    mapping = tmp_path / "map.yaml"
    mapping.write_text(json.dumps({"version": 1, "topics": topics}))  # JSON is YAML
    with pytest.raises(MappingError, match=expected):
        prepare(FIXTURES / "arm.mcap", fields=FIELDS, mapping=mapping)


def test_a_mapping_renames_ignores_and_picks_the_clock(tmp_path: Path) -> None:
    mapping = tmp_path / "map.yaml"
    mapping.write_text(
        "version: 1\n"
        "map_defaults: false\n"
        "topics:\n"
        "  /joint_states: {stream: arm_joints, time: log_time}\n"
        "  /instruction: {stream: said, kind: instruction}\n"
        "  /imu/data: ignore\n"
        "  /not/recorded: {stream: gone}\n"
    )
    recording = prepare(FIXTURES / "arm.mcap", fields=FIELDS, mapping=mapping)
    report = recording.report()
    assert sorted(report["streams"]) == ["arm_joints", "said"]
    assert report["streams"]["arm_joints"]["log_time_rows"] == 100
    reasons = {u["topic"]: u["reason"] for u in report["unmapped_topics"]}
    assert reasons["/imu/data"] == "ignored by the mapping file"
    assert reasons["/ee_pose"] == "not in the mapping file (map_defaults: false)"
    assert report["mapped_topics_not_in_bag"] == ["/not/recorded"]
    rows = converted_rows(recording)
    # make_bags.py logs each joint sample 0.15 ms after its stamp: log_time is what we got
    assert rows["arm_joints"]["t_ns"][0].as_py() == 1_772_357_400 * 10**9 + 150_000
    assert set(rows["said"]["kind"].to_pylist()) == {"instruction"}


def test_a_zero_header_stamp_falls_back_to_log_time(tmp_path: Path) -> None:
    bag = _write(
        tmp_path / "bag",
        [("/joints", T0 + 1000 * i, _joint(T0 + 1000 * i, stamp=0)) for i in range(3)],
    )
    recording = prepare(bag, fields=FIELDS)
    assert converted_rows(recording)["joints"]["t_ns"].to_pylist() == [T0, T0 + 1000, T0 + 2000]
    assert recording.report()["streams"]["joints"]["log_time_rows"] == 3


def test_joint_names_that_change_mid_topic_are_refused(tmp_path: Path) -> None:
    bag = _write(
        tmp_path / "bag",
        [("/joints", T0, _joint(T0)), ("/joints", T0 + 1, _joint(T0 + 1, ("a", "c")))],
    )
    with pytest.raises(UnsupportedMessage, match=r"message 1: joint names \['a', 'c'\] differ"):
        prepare(bag, fields=FIELDS)


# -- the CLI: one line, no traceback, nothing spooled ---------------------------------------------


def _truncated(tmp_path: Path) -> Path:
    return FIXTURES / "arm_truncated.mcap"


def _bad_image(tmp_path: Path) -> Path:
    frame = _image(T0, RGB, "rgb8", data=RGB.reshape(-1)[:10])
    return _write(tmp_path / "bad_image", [("/cam/image_raw", T0, frame)])


def _frame_over_the_chunk_limit(tmp_path: Path) -> Path:
    big = np.zeros((64, 64, 3), np.uint8)  # 12,288 bytes of pixels; --max-chunk-bytes 8192
    return _write(tmp_path / "big_frame", [("/cam/image_raw", T0, _image(T0, big, "rgb8"))])


def _bad_mapping(tmp_path: Path) -> Path:
    (tmp_path / "map.yaml").write_text("version: 2\n")
    return FIXTURES / "arm.mcap"


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_truncated, "truncated at byte 110495: the Chunk record at byte 43"),
        (_bad_image, "message 0: 10 data bytes do not fit 8x6 rgb8"),
        (_bad_mapping, "'version' must be 1 (found 2)"),
        (_frame_over_the_chunk_limit, "stream cam_image_raw (topic /cam/image_raw) has a message"),
    ],
)
def test_the_cli_prints_one_line_and_spools_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make: Callable[[Path], Path],
    expected: str,
) -> None:
    bag = make(tmp_path)
    argv = ["upload", str(bag), "--token", "t0k", "--spool", str(tmp_path / "spool")]
    argv += ["--collector", "http://127.0.0.1:9"]  # never reached: the bag fails first
    argv += ["--max-chunk-bytes", "8192"]
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
