"""Property-based bad input for every decoder a device's bytes reach: only the documented error.

Each property prints how many cases it tried. A decoder may accept or refuse its input, but it
may only refuse with its own error type (ContractViolation / TicketError); anything else would be
a 500 at the collector or a crash of the writer. A refusal must also be usable: its ``reason`` is
one of the contract's (the collector maps it to a problem type and the writer to a dead-letter
header; an unknown one would map to nothing) and its message tells the sender something.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robolake.collector.tickets import TicketError, TicketSigner
from robolake.episode.chunks import decode_chunk, validate_chunk
from robolake.episode.completion import parse_completion
from robolake.episode.errors import REASONS, ContractViolation
from robolake.episode.manifest import parse_manifest
from robolake.episode.records import parse_record
from robolake.episode.synthetic import SyntheticSpec, generate_episode

EPISODE = generate_episode(SyntheticSpec(seed=3, duration_s=1.0, cameras=("head",)))
CHUNKS = list(EPISODE.iter_chunks(max_chunk_bytes=64 * 1024))
MANIFEST: dict[str, Any] = json.loads(EPISODE.manifest_bytes())
TRIED: dict[str, int] = {}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _count(name: str) -> None:
    TRIED[name] = TRIED.get(name, 0) + 1


def _check_refusal(
    violation: ContractViolation, allowed: Collection[str] = REASONS
) -> ContractViolation:
    assert violation.reason in REASONS, f"{violation.reason!r} is not a contract reason"
    assert violation.reason in allowed, f"{violation.reason!r} not expected here: {violation}"
    assert violation.message.strip(), f"refusal {violation.reason!r} says nothing to the sender"
    return violation


def _accepted_or_refused(
    call: Callable[[], object], allowed: Collection[str] = REASONS
) -> ContractViolation | None:
    """None if ``call`` accepted its input, else its checked refusal; any other error escapes."""
    try:
        call()
    except ContractViolation as violation:
        return _check_refusal(violation, allowed)
    return None


@pytest.fixture(scope="module", autouse=True)
def _report() -> Any:
    yield
    print(f"\nfuzzed decoders: {TRIED} (total {sum(TRIED.values())} cases)")


@FUZZ
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_never_crash_the_chunk_decoder(data: bytes) -> None:
    _count("decode_chunk(random bytes)")
    _accepted_or_refused(
        lambda: decode_chunk(data), ("malformed_arrow", "chunk_too_large", "chunk_empty")
    )


@FUZZ
@given(st.integers(0, len(CHUNKS) - 1), st.data())
def test_mutated_chunks_are_accepted_or_refused_with_a_reason(
    index: int, data: st.DataObject
) -> None:
    _count("validate_chunk(mutated chunk)")
    stream, _, raw = CHUNKS[index]
    chunk = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(chunk) - 1))
        chunk[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(chunk)))
    mutated = bytes(chunk[:cut] if data.draw(st.booleans()) else chunk)
    _accepted_or_refused(lambda: validate_chunk(mutated, EPISODE.manifest, stream))


@FUZZ
@given(json_values)
def test_arbitrary_json_never_crashes_the_manifest_parser(value: Any) -> None:
    _count("parse_manifest(random JSON)")
    _accepted_or_refused(
        lambda: parse_manifest(json.dumps(value)), ("manifest_invalid", "unknown_stream_type")
    )


@FUZZ
@given(st.sampled_from(sorted(MANIFEST)), json_values)
def test_manifests_with_one_field_replaced_are_handled(field: str, value: Any) -> None:
    _count("parse_manifest(one field replaced)")
    document = {**MANIFEST, field: value}
    _accepted_or_refused(
        lambda: parse_manifest(json.dumps(document)), ("manifest_invalid", "unknown_stream_type")
    )


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_as_manifest_or_completion(data: bytes) -> None:
    _count("parse_manifest/parse_completion(random bytes)")
    _accepted_or_refused(lambda: parse_manifest(data))
    _accepted_or_refused(lambda: parse_completion(data, EPISODE.manifest))


@FUZZ
@given(st.text(max_size=600))
def test_arbitrary_tickets_are_refused_with_ticket_error(text: str) -> None:
    _count("TicketSigner.verify(random text)")
    with pytest.raises(TicketError) as info:
        TicketSigner(b"k" * 32).verify(text)
    assert str(info.value).strip(), "a ticket refusal says nothing"


@FUZZ
@given(
    st.one_of(st.none(), st.binary(max_size=40)),
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "kind",
                    "episode_id",
                    "stream",
                    "seq",
                    "checksum",
                    "device_id",
                    "capture_point_id",
                    "stream_type",
                    "schema_fingerprint",
                    "x",
                ]
            ),
            st.binary(max_size=40),
        ),
        max_size=12,
    ),
)
def test_arbitrary_record_headers_are_refused_with_record_invalid(
    key: bytes | None, headers: list[tuple[str, bytes]]
) -> None:
    _count("parse_record(random headers)")
    _accepted_or_refused(lambda: parse_record(key, headers), ("record_invalid",))


@pytest.mark.parametrize(
    "when", ["0000-01-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-13-01T00:00:00Z"]
)
def test_pattern_valid_but_impossible_dates_are_manifest_invalid(when: str) -> None:
    """Found by the schemathesis run: these matched the date-time pattern and crashed (500)."""
    with pytest.raises(ContractViolation) as info:
        parse_manifest(json.dumps({**MANIFEST, "started_at": when}))
    _check_refusal(info.value, ("manifest_invalid",))


def test_the_refusal_check_refuses_an_unknown_reason_and_an_empty_message() -> None:
    """The checks above can fail: a refusal outside the contract or without words is caught."""
    unknown = ContractViolation("no_such_reason", "x")  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="not a contract reason"):
        _check_refusal(unknown)
    with pytest.raises(AssertionError, match="says nothing"):
        _check_refusal(ContractViolation("chunk_empty", " "))
    with pytest.raises(AssertionError, match="not expected here"):
        _accepted_or_refused(lambda: decode_chunk(b""), ("manifest_invalid",))


def _raise_value_error() -> None:
    raise ValueError("boom")


def test_errors_other_than_a_refusal_escape() -> None:
    with pytest.raises(ValueError, match="boom"):
        _accepted_or_refused(_raise_value_error)
