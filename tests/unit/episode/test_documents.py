"""Issue 15, defects 2, 3, 4, 5 and 7: what the contract accepts is storable, and owned.

Each input here was once accepted by the collector (2xx) and then crashed the writer, made the
collector answer 500, or let one device write into another's episode. They are samples of
classes; the classes are tested in ``test_documents_fuzz.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from robolake.episode.completion import parse_completion
from robolake.episode.documents import MAX_DEPTH, load_document
from robolake.episode.errors import ContractViolation, Reason
from robolake.episode.ids import (
    is_owned_by,
    is_uuid7,
    new_episode_id,
    owner_tag,
    parse_timestamp_ns,
)
from robolake.episode.manifest import parse_manifest
from robolake.episode.records import chunk_record, parse_record, parse_seq
from robolake.episode.synthetic import SyntheticEpisode

Doc = dict[str, Any]


def _manifest_text(episode: SyntheticEpisode, change: Callable[[str], str]) -> bytes:
    return change(episode.manifest_bytes().decode()).encode()


def _refused(data: bytes | str, reason: Reason = "manifest_invalid") -> ContractViolation:
    with pytest.raises(ContractViolation) as caught:
        parse_manifest(data)
    assert caught.value.reason == reason, caught.value.message
    return caught.value


def test_lone_surrogate_in_a_string_is_refused(episode: SyntheticEpisode) -> None:
    task = episode.manifest_document["task"]
    data = _manifest_text(episode, lambda t: t.replace(f'"{task}"', '"pick\\ud800 box"'))
    assert "surrogate" in _refused(data).message
    key = _manifest_text(episode, lambda t: t.replace('"software":{', '"software":{"\\udfff":"x",'))
    assert "surrogate" in _refused(key).message


def test_episode_id_beyond_year_9999_is_refused(episode: SyntheticEpisode) -> None:
    late = "ffffffff-ffff-7fff-bfff-ffffffffffff"
    assert not is_uuid7(late)
    doc = dict(episode.manifest_document, episode_id=late)
    assert "9999" in _refused(json.dumps(doc)).message


@pytest.mark.parametrize(
    "nesting",
    [
        "[" * 1000 + "]" * 1000,
        '{"a":' * 1000 + "1" + "}" * 1000,
        "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),
    ],
)
def test_deep_nesting_is_a_contract_violation_not_a_recursion_error(
    episode: SyntheticEpisode, nesting: str
) -> None:
    doc = json.dumps(dict(episode.manifest_document, tags=["x"])).replace('["x"]', nesting)
    assert "nests deeper" in _refused(doc).message
    with pytest.raises(ContractViolation) as caught:
        parse_completion(nesting)
    assert caught.value.reason == "manifest_invalid"


@pytest.mark.parametrize(
    ("literal", "why"),
    [
        ("Infinity", "NaN or Infinity"),
        ("-Infinity", "NaN or Infinity"),
        ("NaN", "NaN or Infinity"),
        ("1e999", "finite"),
    ],
)
def test_non_finite_numbers_are_refused(episode: SyntheticEpisode, literal: str, why: str) -> None:
    doc = episode.manifest_document
    rate = doc["streams"][0]["rate_hz"]
    text = json.dumps(doc).replace(f'"rate_hz": {json.dumps(rate)}', f'"rate_hz": {literal}', 1)
    assert literal in text
    assert why in _refused(text).message


def test_integers_beyond_int64_and_duplicate_keys_are_refused(episode: SyntheticEpisode) -> None:
    with pytest.raises(ContractViolation, match="64 bits"):
        parse_completion('{"streams": {"joint_state": {"chunks": 1, "rows": 9223372036854775808}}}')
    with pytest.raises(ContractViolation, match="64 bits"):
        load_document("1" * 5000, what="x", reason="manifest_invalid")
    twice = (
        '{"streams": {"a": {"chunks": 1, "rows": 1}}, "streams": {"b": {"chunks": 1, "rows": 1}}}'
    )
    with pytest.raises(ContractViolation, match="appears twice"):
        parse_completion(twice)


def test_documents_must_be_utf8(episode: SyntheticEpisode) -> None:
    utf16 = episode.manifest_bytes().decode().encode("utf-16")  # json.loads would read it
    assert "UTF-8" in _refused(utf16).message


def test_timestamps_must_fit_int64_nanoseconds(episode: SyntheticEpisode) -> None:
    with pytest.raises(ValueError, match="int64"):
        parse_timestamp_ns("9999-12-31T00:00:00Z")
    assert parse_timestamp_ns("2262-04-11T23:47:16.854775807Z") == 2**63 - 1
    doc = dict(episode.manifest_document, ended_at="2300-01-01T00:00:00Z")
    assert "int64" in _refused(json.dumps(doc)).message


def test_a_final_newline_does_not_pass_an_anchored_pattern(episode: SyntheticEpisode) -> None:
    doc = dict(episode.manifest_document, capture_point_id="cp-a\n")
    assert "does not match" in _refused(json.dumps(doc)).message


@pytest.mark.parametrize(
    "text", ["+3", "\u0663", "1_0", "0007", " 7", "7\n", "-1", "", "1" * 19, "7.0"]
)
def test_seq_has_exactly_one_spelling(text: str) -> None:
    with pytest.raises(ValueError, match="canonical"):
        parse_seq(text)


@pytest.mark.parametrize("text", ["0", "7", "10", "999999999999999999"])
def test_canonical_seq_parses(text: str) -> None:
    assert parse_seq(text) == int(text)


def test_an_episode_id_is_owned_by_the_device_that_made_it(episode: SyntheticEpisode) -> None:
    """Defect 5: ownership is in the id, so every replica and restart decides it alike."""
    mine = new_episode_id("dev-a")
    assert is_uuid7(mine)
    assert is_owned_by(mine, "dev-a")
    assert not is_owned_by(mine, "dev-b")
    assert mine.endswith(f"{owner_tag('dev-a'):012x}")
    doc = episode.manifest_document
    stolen = dict(doc, episode_id=new_episode_id("someone-else"))
    violation = _refused(json.dumps(stolen), "episode_not_owned")
    assert doc["device_id"] in violation.message
    # A record stamped by another device for this episode is refused by the writer too.
    manifest = episode.manifest
    stream, seq, data = next(episode.iter_chunks())
    meta = chunk_record(manifest, stream, seq, data)
    forged = [(n, b"dev-b" if n == "device_id" else v) for n, v in meta.headers()]
    with pytest.raises(ContractViolation) as caught:
        parse_record(meta.key, forged)
    assert caught.value.reason == "episode_not_owned"
    assert parse_record(meta.key, meta.headers()).device_id == manifest.device_id


def test_an_integer_is_written_without_a_fraction(episode: SyntheticEpisode) -> None:
    """JSON Schema calls 9.3e18 an integer; the index's int64 column does not."""
    with pytest.raises(ContractViolation, match="integer"):
        parse_completion('{"streams": {"joint_state": {"chunks": 9.3e18, "rows": 1}}}')
    with pytest.raises(ContractViolation, match="integer"):
        parse_completion('{"streams": {"joint_state": {"chunks": 1.0, "rows": 1}}}')
