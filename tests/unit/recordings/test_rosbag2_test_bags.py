"""rosbag2's own test bags (recorded by ROS 2, tests/fixtures/ros2/README.md): what a real
recorder wrote converts, or fails clearly, like the bags written here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from robolake.recordings import CorruptRecording, MappingError, RecordingError, prepare, rosbag

ROSBAG2 = Path(__file__).resolve().parents[2] / "fixtures" / "ros2" / "rosbag2"
FIELDS: dict[str, Any] = {
    "device_id": "rig-7",
    "capture_point_id": "lab-3",
    "robot_type": "turtlebot",
    "scene": "lab",
    "task": "say hello",
    "operator": "op-1",
}


@pytest.mark.parametrize("bag", ["talker", "talker/talker.mcap"])
def test_the_talker_bag_becomes_an_event_stream(bag: str) -> None:
    recording = prepare(ROSBAG2 / bag, fields=FIELDS)
    rows = [table for stream, table in recording.batches() if stream == "topic"]
    assert [r.num_rows for r in rows] == [10]
    assert rows[0]["text"].to_pylist() == [f"Hello, world! {i}" for i in range(10)]
    t_ns = rows[0]["t_ns"].to_pylist()
    assert t_ns == sorted(t_ns)
    assert t_ns[0] >= 1585866235112411371  # the bag's starting_time: log times, String has none
    report = recording.report()
    assert report["streams"]["topic"]["log_time_rows"] == 10
    assert [(u["topic"], u["messages"]) for u in report["unmapped_topics"]] == [
        ("/parameter_events", 0),
        ("/rosout", 10),
    ]


def test_the_directory_and_its_mcap_are_the_same_episode() -> None:
    directory = prepare(ROSBAG2 / "talker", fields=FIELDS)
    alone = prepare(ROSBAG2 / "talker" / "talker.mcap", fields=FIELDS)
    assert directory.manifest == alone.manifest


def test_fewer_messages_than_the_bag_declares_is_an_error_not_a_silent_subset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Read through its metadata.yaml, rosbags 0.11.9 matches none of this bag's topics to the
    # MCAP's channels and yields no message; the count check turns that into an error.
    monkeypatch.setattr(rosbag, "reads_storage_files", lambda path, files: False)
    with pytest.raises(CorruptRecording, match=r"topic /topic has 10 messages, but 0 could be"):
        prepare(ROSBAG2 / "talker", fields=FIELDS)


def test_test_msgs_types_are_not_convertible(tmp_path: Path) -> None:
    bag = ROSBAG2 / "cdr_test"
    with pytest.raises(RecordingError, match=r"/test_topic \(test_msgs/msg/BasicTypes\)"):
        prepare(bag, fields=FIELDS)
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"version": 1, "topics": {"/array_topic": {"stream": "a"}}}))
    with pytest.raises(MappingError, match=r"no converter for its type test_msgs/msg/Arrays"):
        prepare(bag, fields=FIELDS, mapping=mapping)
