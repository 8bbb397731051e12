"""Manifests, completions, episode ids and timestamps."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from robolake.episode.completion import parse_completion
from robolake.episode.errors import ContractViolation, Reason
from robolake.episode.ids import (
    episode_date,
    format_timestamp_ns,
    is_uuid7,
    parse_timestamp_ns,
    uuid7,
    uuid7_unix_ms,
)
from robolake.episode.manifest import parse_manifest
from robolake.episode.synthetic import SyntheticEpisode

Doc = dict[str, Any]


def test_good_manifest_parses(episode: SyntheticEpisode) -> None:
    manifest = parse_manifest(episode.manifest_bytes())
    assert manifest.episode_id == episode.manifest_document["episode_id"]
    assert manifest.ended_at_ns - manifest.started_at_ns == 2_000_000_000
    joints = manifest.stream("joint_state")
    assert joints.stream_type.key == "joint_state.v1"
    assert joints.elements is not None
    assert len(joints.elements) == 29
    camera = manifest.stream("cam_head").camera
    assert camera is not None
    assert (camera.width, camera.height) == (640, 480)
    assert manifest.rights is not None
    assert manifest.rights.consent == "not_required"


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        node: Any = doc
        parts = path.split(".")
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node[part]
        node[parts[-1]] = value

    return change


def _drop(key: str) -> Callable[[Doc], None]:
    return lambda doc: doc.pop(key) and None


def _duplicate_stream(doc: Doc) -> None:
    doc["streams"].append(copy.deepcopy(doc["streams"][0]))


def _no_elements(doc: Doc) -> None:
    del doc["streams"][0]["elements"]


BAD: list[tuple[str, Callable[[Doc], None], Reason, str]] = [
    ("missing task", _drop("task"), "manifest_invalid", "'task' is a required property"),
    (
        "uuid4 id",
        _set("episode_id", "0f8fad5b-d9cb-469f-a165-70867728950e"),
        "manifest_invalid",
        "episode_id",
    ),
    ("unknown scene", _set("scene", "moon"), "manifest_invalid", "scene"),
    ("extra field", _set("colour", "red"), "manifest_invalid", "colour"),
    ("no offset", _set("started_at", "2026-01-05T08:00:00"), "manifest_invalid", "started_at"),
    (
        "end before start",
        _set("ended_at", "2026-01-05T07:00:00Z"),
        "manifest_invalid",
        "before started_at",
    ),
    ("zero rate", _set("streams.0.rate_hz", 0), "manifest_invalid", "rate_hz"),
    ("duplicate stream", _duplicate_stream, "manifest_invalid", "repeated: joint_state"),
    ("unknown type", _set("streams.0.type", "lidar"), "unknown_stream_type", "lidar.v1"),
    ("unknown version", _set("streams.0.type_version", 9), "unknown_stream_type", "v9"),
    (
        "wrong fingerprint",
        _set("streams.0.fingerprint", "0123456789abcdef"),
        "unknown_stream_type",
        "fingerprint",
    ),
    ("joints unnamed", _no_elements, "manifest_invalid", "needs 'elements'"),
    ("bad device id", _set("device_id", "dev/../x"), "manifest_invalid", "device_id"),
]


@pytest.mark.parametrize(
    ("change", "reason", "text"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_manifest_is_rejected(
    episode: SyntheticEpisode, change: Callable[[Doc], None], reason: Reason, text: str
) -> None:
    document = copy.deepcopy(dict(episode.manifest_document))
    change(document)
    with pytest.raises(ContractViolation) as caught:
        parse_manifest(json.dumps(document).encode())
    assert caught.value.reason == reason
    assert text in caught.value.message


@pytest.mark.parametrize("data", [b"{nope", b"[1, 2]", b"\xff\xfe", b" " * (1024 * 1024 + 1)])
def test_undecodable_manifest_is_rejected(data: bytes) -> None:
    with pytest.raises(ContractViolation) as caught:
        parse_manifest(data)
    assert caught.value.reason == "manifest_invalid"


def test_unknown_stream_names_the_declared_ones(episode: SyntheticEpisode) -> None:
    with pytest.raises(ContractViolation) as caught:
        episode.manifest.stream("lidar")
    assert caught.value.reason == "unknown_stream"
    assert "joint_state" in caught.value.message


def test_completion(episode: SyntheticEpisode) -> None:
    chunks = episode.chunks()
    counts = parse_completion(json.dumps(episode.completion_document(chunks)), episode.manifest)
    assert counts["joint_state"].rows == 200
    assert counts["cam_head"].chunks == len(chunks["cam_head"])
    partial = episode.completion_document(chunks)
    del partial["streams"]["imu"]
    with pytest.raises(ContractViolation, match="imu"):
        parse_completion(partial, episode.manifest)
    extra = episode.completion_document(chunks)
    extra["streams"]["lidar"] = {"chunks": 1, "rows": 1}
    with pytest.raises(ContractViolation) as caught:
        parse_completion(extra, episode.manifest)
    assert caught.value.reason == "unknown_stream"
    with pytest.raises(ContractViolation) as caught:
        parse_completion({"streams": {"imu": {"chunks": -1, "rows": 0}}})
    assert caught.value.reason == "manifest_invalid"


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("2026-01-05T08:00:00.123456789Z", 1_767_600_000_123_456_789),
        ("2026-01-05T09:00:00.5+01:00", 1_767_600_000_500_000_000),
        ("2026-01-05T07:30:00-00:30", 1_767_600_000_000_000_000),
    ],
)
def test_timestamps_keep_nanoseconds(text: str, ns: int) -> None:
    assert parse_timestamp_ns(text) == ns
    assert parse_timestamp_ns(format_timestamp_ns(ns)) == ns


@pytest.mark.parametrize("text", ["2026-02-30T00:00:00Z", "2026-01-05 08:00:00Z", "yesterday"])
def test_bad_timestamps(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 -- message varies by cause
        parse_timestamp_ns(text)


def test_uuid7_layout() -> None:
    first = uuid7(1_767_600_000_123, bytes(range(10)))
    assert first == uuid7(1_767_600_000_123, bytes(range(10)))
    assert is_uuid7(first)
    assert uuid7_unix_ms(first) == 1_767_600_000_123
    assert episode_date(first).isoformat() == "2026-01-05"
    assert uuid7(1, b"\xff" * 10) < uuid7(2, b"\x00" * 10)  # time-ordered as text
    assert is_uuid7(uuid7())
    assert not is_uuid7(first.upper())
    with pytest.raises(ValueError, match="48 bits"):
        uuid7(1 << 48)
