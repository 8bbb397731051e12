"""Kafka record keys and headers, dead-letter headers, checksums."""

from __future__ import annotations

from dataclasses import replace

import pytest

from robolake.episode.checksums import (
    checksum,
    checksum_from_content_digest,
    content_digest,
    verify_checksum,
)
from robolake.episode.errors import ContractViolation
from robolake.episode.records import (
    DEAD_LETTER_HEADERS,
    HEADER_ORGANISATION,
    OPTIONAL_HEADERS,
    REQUIRED_HEADERS,
    Headers,
    chunk_record,
    complete_record,
    dead_letter_headers,
    manifest_record,
    parse_record,
)
from robolake.episode.synthetic import SyntheticEpisode


def test_chunk_record_round_trips(episode: SyntheticEpisode) -> None:
    value = episode.chunks()["joint_state"][0]
    meta = chunk_record(episode.manifest, "joint_state", 0, value)
    headers = meta.headers()
    assert [name for name, _ in headers] == list(REQUIRED_HEADERS["chunk"])
    assert meta.key == episode.manifest.episode_id.encode()
    assert dict(headers)["checksum"] == checksum(value).encode()
    assert dict(headers)["schema_fingerprint"] == (
        episode.manifest.stream("joint_state").stream_type.fingerprint.encode()
    )
    assert parse_record(meta.key, headers) == meta
    verify_checksum(value, meta.checksum)


def test_manifest_and_complete_records(episode: SyntheticEpisode) -> None:
    for build, kind in ((manifest_record, "manifest"), (complete_record, "complete")):
        meta = build(episode.manifest, b"{}")
        assert meta.kind == kind
        assert [n for n, _ in meta.headers()] == list(REQUIRED_HEADERS[kind])
        assert parse_record(meta.key, meta.headers()) == meta


def test_chunk_record_checks_its_inputs(episode: SyntheticEpisode) -> None:
    with pytest.raises(ContractViolation) as caught:
        chunk_record(episode.manifest, "lidar", 0, b"")
    assert caught.value.reason == "unknown_stream"
    with pytest.raises(ValueError, match="seq"):
        chunk_record(episode.manifest, "imu", -1, b"")


def _chunk_headers(episode: SyntheticEpisode) -> tuple[bytes, Headers]:
    meta = chunk_record(episode.manifest, "imu", 3, b"chunk")
    return meta.key, meta.headers()


def _replace(headers: Headers, name: str, value: bytes | None) -> Headers:
    out = [(n, v) for n, v in headers if n != name]
    return out if value is None else [*out, (name, value)]


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("seq", None, "lacks headers ['seq']"),
        ("kind", b"video", "'kind'"),
        ("seq", b"-1", "'seq'"),
        ("seq", b"007", "'seq'"),
        ("schema_fingerprint", b"xyz", "schema_fingerprint"),
        ("stream_type", b"imu", "stream_type"),
        ("checksum", b"md5:abc", "checksum"),
        ("device_id", b"\xff", "UTF-8"),
        ("episode_id", b"not-a-uuid", "UUIDv7"),
    ],
)
def test_bad_headers_are_record_invalid(
    episode: SyntheticEpisode, name: str, value: bytes | None, text: str
) -> None:
    key, headers = _chunk_headers(episode)
    with pytest.raises(ContractViolation) as caught:
        parse_record(key, _replace(headers, name, value))
    assert caught.value.reason == "record_invalid"
    assert text in caught.value.message


@pytest.mark.parametrize("kind", ["manifest", "chunk", "complete"])
def test_organisation_header_round_trips_on_every_kind(
    episode: SyntheticEpisode, kind: str
) -> None:
    if kind == "chunk":
        meta = chunk_record(episode.manifest, "imu", 3, b"chunk")
    else:
        meta = (manifest_record if kind == "manifest" else complete_record)(episode.manifest, b"{}")
    assert meta.organisation is None  # the contract's builders know nothing of tokens
    stamped = replace(meta, organisation="acme.robotics:eu-1")
    headers = stamped.headers()
    assert [n for n, _ in headers] == [*REQUIRED_HEADERS[meta.kind], *OPTIONAL_HEADERS]
    assert dict(headers)[HEADER_ORGANISATION] == b"acme.robotics:eu-1"
    assert parse_record(stamped.key, headers) == stamped


def test_records_without_organisation_still_parse(episode: SyntheticEpisode) -> None:
    key, headers = _chunk_headers(episode)  # what collectors before the header produced
    assert HEADER_ORGANISATION not in dict(headers)
    assert parse_record(key, headers).organisation is None


@pytest.mark.parametrize("value", [b"", b"-acme", b"acme corp", b"a" * 129, b"\xc3\xa9"])
def test_malformed_organisation_is_record_invalid(episode: SyntheticEpisode, value: bytes) -> None:
    key, headers = _chunk_headers(episode)
    with pytest.raises(ContractViolation) as caught:
        parse_record(key, [*headers, (HEADER_ORGANISATION, value)])
    assert caught.value.reason == "record_invalid"
    assert "organisation" in caught.value.message


def test_key_must_be_the_episode_id(episode: SyntheticEpisode) -> None:
    _key, headers = _chunk_headers(episode)
    with pytest.raises(ContractViolation, match="record key"):
        parse_record(b"other", headers)
    with pytest.raises(ContractViolation, match="appears twice"):
        parse_record(_key, [*headers, headers[0]])


def test_unknown_headers_are_ignored(episode: SyntheticEpisode) -> None:
    key, headers = _chunk_headers(episode)
    assert parse_record(key, [*headers, ("traceparent", b"00-abc")]).seq == 3


def test_dead_letter_headers(episode: SyntheticEpisode) -> None:
    key, headers = _chunk_headers(episode)
    first = dead_letter_headers(
        headers, "schema_mismatch", "x" * 5000, topic="robolake.chunks.v1", partition=2, offset=41
    )
    assert [n for n, _ in first][-len(DEAD_LETTER_HEADERS) :] == list(DEAD_LETTER_HEADERS)
    values = dict(first)
    assert values["dlq_reason"] == b"schema_mismatch"
    assert len(values["dlq_message"]) == 1024
    assert values["dlq_source_offset"] == b"41"
    again = dead_letter_headers(
        first, "record_invalid", "é" * 600, topic="t", partition=0, offset=1
    )
    assert [n for n, _ in again].count("dlq_reason") == 1
    assert dict(again)["dlq_message"].decode() == "é" * 512
    assert parse_record(key, again).stream == "imu"  # still a readable chunk record


def test_checksums() -> None:
    data = b"robot bytes"
    assert checksum(data).startswith("sha256:")
    assert len(checksum(data)) == 71
    verify_checksum(data, checksum(data))
    with pytest.raises(ContractViolation) as caught:
        verify_checksum(data + b"!", checksum(data))
    assert caught.value.reason == "checksum_mismatch"
    assert caught.value.retriable
    with pytest.raises(ContractViolation, match="spelled"):
        verify_checksum(data, "sha1:abc")
    assert checksum_from_content_digest(content_digest(data)) == checksum(data)
    both = f"md5=:AAAA:, {content_digest(data)}"
    assert checksum_from_content_digest(both) == checksum(data)


@pytest.mark.parametrize("header", ["", "sha-256=abc", "sha-256=:AAAA:", "sha-256=:!!:"])
def test_bad_content_digest(header: str) -> None:
    with pytest.raises(ContractViolation) as caught:
        checksum_from_content_digest(header)
    assert caught.value.reason == "checksum_mismatch"
