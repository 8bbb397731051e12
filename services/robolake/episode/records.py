"""The Kafka record contract between collector and writer (``schemas/kafka-records.md``).

Every record of the chunk topic is keyed by ``episode_id`` -- an episode stays in one partition,
in order, so the writer sees its manifest before its chunks and its completion after them. The
value is the device's bytes, unchanged; everything the writer needs without parsing the value
rides in headers, UTF-8 text, each at most once.

Provenance the collector knows from the device's token but the manifest does not say (the
organisation) rides in optional headers: stamped once, at ingest, so readers never need the
collectors' device registry; optional because records produced before it existed must still
parse.

Headers are lists of ``(str, bytes)`` pairs, the shape aiokafka produces and consumes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, get_args

from robolake.episode.checksums import checksum, is_checksum
from robolake.episode.errors import ContractViolation, Reason
from robolake.episode.ids import is_uuid7, ownership_error
from robolake.episode.manifest import EpisodeManifest

RecordKind = Literal["manifest", "chunk", "complete"]
KINDS: Final[tuple[RecordKind, ...]] = get_args(RecordKind)

Headers = list[tuple[str, bytes]]
#: Record values as the collector holds them: the body buffer, without a copy.
Bytes = bytes | bytearray | memoryview

HEADER_KIND: Final = "kind"
HEADER_EPISODE_ID: Final = "episode_id"
HEADER_CAPTURE_POINT_ID: Final = "capture_point_id"
HEADER_DEVICE_ID: Final = "device_id"
HEADER_CHECKSUM: Final = "checksum"
HEADER_STREAM: Final = "stream"
HEADER_SEQ: Final = "seq"
HEADER_STREAM_TYPE: Final = "stream_type"
HEADER_SCHEMA_FINGERPRINT: Final = "schema_fingerprint"
HEADER_ORGANISATION: Final = "organisation"

#: Headers every record carries.
COMMON_HEADERS: Final = (
    HEADER_KIND,
    HEADER_EPISODE_ID,
    HEADER_CAPTURE_POINT_ID,
    HEADER_DEVICE_ID,
    HEADER_CHECKSUM,
)
#: Headers only chunk records carry.
CHUNK_HEADERS: Final = (HEADER_STREAM, HEADER_SEQ, HEADER_STREAM_TYPE, HEADER_SCHEMA_FINGERPRINT)
#: Required header names per kind.
REQUIRED_HEADERS: Final[dict[RecordKind, tuple[str, ...]]] = {
    "manifest": COMMON_HEADERS,
    "chunk": COMMON_HEADERS + CHUNK_HEADERS,
    "complete": COMMON_HEADERS,
}
#: Headers any kind may carry, after the required ones; absent from older collectors' records.
OPTIONAL_HEADERS: Final = (HEADER_ORGANISATION,)

HEADER_DLQ_REASON: Final = "dlq_reason"
HEADER_DLQ_MESSAGE: Final = "dlq_message"
HEADER_DLQ_SOURCE_TOPIC: Final = "dlq_source_topic"
HEADER_DLQ_SOURCE_PARTITION: Final = "dlq_source_partition"
HEADER_DLQ_SOURCE_OFFSET: Final = "dlq_source_offset"
#: Headers a dead-lettered record gets on top of its original ones.
DEAD_LETTER_HEADERS: Final = (
    HEADER_DLQ_REASON,
    HEADER_DLQ_MESSAGE,
    HEADER_DLQ_SOURCE_TOPIC,
    HEADER_DLQ_SOURCE_PARTITION,
    HEADER_DLQ_SOURCE_OFFSET,
)
#: Bound of ``dlq_message`` in bytes, so a verbose error cannot bloat the record.
MAX_DLQ_MESSAGE_BYTES: Final = 1024

_STREAM_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,62}\.v[1-9][0-9]*$")
_FINGERPRINT = re.compile(r"^[0-9a-f]{16}$")
_SEQ = re.compile(r"0|[1-9][0-9]{0,17}")
#: The device registry's identifier rule (``robolake.devices.registry.validate_identifier``):
#: an organisation that breaks it did not come from the registry.
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
#: Largest chunk sequence number (18 digits).
MAX_SEQ: Final = 10**18 - 1


@dataclass(frozen=True)
class RecordMeta:
    """What a record's key and headers say; chunk-only fields are None for other kinds."""

    kind: RecordKind
    episode_id: str
    capture_point_id: str
    device_id: str
    checksum: str
    stream: str | None = None
    seq: int | None = None
    stream_type: str | None = None
    schema_fingerprint: str | None = None
    #: Organisation of the authenticated device; None in records of older collectors.
    organisation: str | None = None

    @property
    def key(self) -> bytes:
        """The record key: the episode id."""
        return self.episode_id.encode("ascii")

    def headers(self) -> Headers:
        """Headers in contract order: the kind's required ones, then the optional ones set."""
        values: dict[str, str | int | None] = {
            HEADER_KIND: self.kind,
            HEADER_EPISODE_ID: self.episode_id,
            HEADER_CAPTURE_POINT_ID: self.capture_point_id,
            HEADER_DEVICE_ID: self.device_id,
            HEADER_CHECKSUM: self.checksum,
            HEADER_STREAM: self.stream,
            HEADER_SEQ: self.seq,
            HEADER_STREAM_TYPE: self.stream_type,
            HEADER_SCHEMA_FINGERPRINT: self.schema_fingerprint,
        }
        headers = [(name, str(values[name]).encode()) for name in REQUIRED_HEADERS[self.kind]]
        if self.organisation is not None:
            headers.append((HEADER_ORGANISATION, self.organisation.encode()))
        return headers


def manifest_record(manifest: EpisodeManifest, value: Bytes) -> RecordMeta:
    """Meta of the record carrying the manifest JSON ``value`` as the device sent it."""
    return _common(manifest, "manifest", value)


def complete_record(manifest: EpisodeManifest, value: Bytes) -> RecordMeta:
    """Meta of the record carrying the completion JSON ``value`` as the device sent it."""
    return _common(manifest, "complete", value)


def chunk_record(
    manifest: EpisodeManifest, stream: str, seq: int, value: Bytes, *, digest: str | None = None
) -> RecordMeta:
    """Meta of the record carrying chunk ``seq`` of ``stream``; ``value`` is the chunk bytes.

    ``digest`` is ``value``'s checksum when the caller already computed it (the collector
    verified it against the device's header), saving a second pass over the bytes.
    """
    if seq < 0:
        raise ValueError(f"seq must be >= 0, got {seq}")
    decl = manifest.stream(stream)
    base = _common(manifest, "chunk", value, digest)
    return RecordMeta(
        kind="chunk",
        episode_id=base.episode_id,
        capture_point_id=base.capture_point_id,
        device_id=base.device_id,
        checksum=base.checksum,
        stream=stream,
        seq=seq,
        stream_type=decl.stream_type.key,
        schema_fingerprint=decl.stream_type.fingerprint,
    )


def _common(
    manifest: EpisodeManifest, kind: RecordKind, value: Bytes, digest: str | None = None
) -> RecordMeta:
    return RecordMeta(
        kind=kind,
        episode_id=manifest.episode_id,
        capture_point_id=manifest.capture_point_id,
        device_id=manifest.device_id,
        checksum=digest if digest is not None else checksum(value),
    )


def parse_record(key: bytes | None, headers: Sequence[tuple[str, bytes]]) -> RecordMeta:
    """Read a consumed record's key and headers; ``record_invalid`` if they break the contract.

    Unknown headers are ignored, so producers can add headers without breaking old writers.
    The value's checksum is not verified here (see :func:`robolake.episode.checksums
    .verify_checksum`), so callers choose when to pay for hashing.
    """
    values: dict[str, str] = {}
    for name, raw in headers:
        if name in values:
            raise _invalid(f"header {name!r} appears twice")
        try:
            values[name] = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _invalid(f"header {name!r} is not UTF-8") from exc
    kind = values.get(HEADER_KIND)
    if kind not in KINDS:
        raise _invalid(f"header 'kind' is {kind!r}, expected one of {list(KINDS)}")
    missing = [h for h in REQUIRED_HEADERS[kind] if h not in values]
    if missing:
        raise _invalid(f"{kind} record lacks headers {missing}")
    episode_id = values[HEADER_EPISODE_ID]
    if not is_uuid7(episode_id):
        raise _invalid(f"episode_id {episode_id!r} is not a canonical UUIDv7")
    if key != episode_id.encode():
        raise _invalid(f"record key {key!r} differs from episode_id {episode_id}")
    owner_problem = ownership_error(episode_id, values[HEADER_DEVICE_ID])
    if owner_problem is not None:
        raise ContractViolation("episode_not_owned", owner_problem)
    if not is_checksum(values[HEADER_CHECKSUM]):
        raise _invalid(f"checksum {values[HEADER_CHECKSUM]!r} is not sha256:<hex>")
    organisation = values.get(HEADER_ORGANISATION)
    if organisation is not None and _IDENTIFIER.fullmatch(organisation) is None:
        raise _invalid(f"header 'organisation' is malformed: {organisation[:40]!r}")
    if kind != "chunk":
        return RecordMeta(
            kind=kind,
            episode_id=episode_id,
            capture_point_id=values[HEADER_CAPTURE_POINT_ID],
            device_id=values[HEADER_DEVICE_ID],
            checksum=values[HEADER_CHECKSUM],
            organisation=organisation,
        )
    for name, pattern in (
        (HEADER_SEQ, _SEQ),
        (HEADER_STREAM_TYPE, _STREAM_TYPE),
        (HEADER_SCHEMA_FINGERPRINT, _FINGERPRINT),
    ):
        if pattern.fullmatch(values[name]) is None:
            raise _invalid(f"header {name!r} is malformed: {values[name]!r}")
    return RecordMeta(
        kind="chunk",
        episode_id=episode_id,
        capture_point_id=values[HEADER_CAPTURE_POINT_ID],
        device_id=values[HEADER_DEVICE_ID],
        checksum=values[HEADER_CHECKSUM],
        stream=values[HEADER_STREAM],
        seq=parse_seq(values[HEADER_SEQ]),
        stream_type=values[HEADER_STREAM_TYPE],
        schema_fingerprint=values[HEADER_SCHEMA_FINGERPRINT],
        organisation=organisation,
    )


def parse_seq(text: str) -> int:
    """A chunk's ``seq`` from text (URL segment, header): canonical ASCII decimal, < 10**18.

    ``int()`` alone reads ``+3``, `` 7``, ``1_0``, Arabic-Indic digits and ``0007``, so several
    spellings would name one chunk, or one spelling two; the contract has exactly one spelling
    per number. Raises ValueError.
    """
    if _SEQ.fullmatch(text) is None:
        raise ValueError(
            f"seq {text[:40]!r} is not a canonical decimal integer 0 .. {MAX_SEQ} (ASCII digits, "
            "no sign, no leading zeros)"
        )
    return int(text)


def _invalid(message: str) -> ContractViolation:
    return ContractViolation("record_invalid", message)


def dead_letter_headers(
    original: Sequence[tuple[str, bytes]],
    reason: Reason,
    message: str,
    *,
    topic: str,
    partition: int,
    offset: int,
) -> Headers:
    """The original headers (earlier ``dlq_*`` ones dropped) plus why and where it came from."""
    kept = [(name, value) for name, value in original if name not in DEAD_LETTER_HEADERS]
    text = message.encode()[:MAX_DLQ_MESSAGE_BYTES].decode("utf-8", errors="ignore")
    return [
        *kept,
        (HEADER_DLQ_REASON, reason.encode()),
        (HEADER_DLQ_MESSAGE, text.encode()),
        (HEADER_DLQ_SOURCE_TOPIC, topic.encode()),
        (HEADER_DLQ_SOURCE_PARTITION, str(partition).encode()),
        (HEADER_DLQ_SOURCE_OFFSET, str(offset).encode()),
    ]
