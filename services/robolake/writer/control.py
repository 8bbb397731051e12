"""The commit control topics: what a writer asks the group's elected committer, and its answer.

With ``--committer elected`` (:mod:`robolake.writer.coordinator`) the writers of a group do not
commit to the tables themselves. Each stores its flushes' files as before and publishes one
:class:`CommitRequest` per table to :data:`~robolake.episode.topics.COMMIT_REQUEST_TOPIC`; the
one writer elected committer commits them and publishes a :class:`CommitResult` per request to
:data:`~robolake.episode.topics.COMMIT_RESULT_TOPIC`. This is the Apache Iceberg Kafka Connect
sink's control topic, in robolake's terms: the sink's workers send their data files, its
coordinator commits them with the offsets.

A request carries everything a commit needs and nothing the committer has to fetch: the
compare-and-set (partition, expected and next offset, checkpoint) and each file's key, size and
Parquet footer, from which the committer builds the manifest entry against the table's schema
at commit time (as the writer's own committer does). Both topics are shared by every writer
group of a cluster; the group is every message's key, and the other groups' messages are
skipped unread. Messages are JSON (footers base64): a few kB per file, one per table per commit.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from robolake.writer.committer import StagedFile

CONTROL_VERSION: Final = 1

Status = Literal["landed", "already", "fenced", "unavailable"]
STATUSES: Final[tuple[Status, ...]] = ("landed", "already", "fenced", "unavailable")


class ControlMessageError(ValueError):
    """A control message that cannot be read (another version, or not ours)."""


def footer_bytes(footer: pq.FileMetaData) -> bytes:
    """A Parquet footer as the bytes of a ``_metadata`` file (pyarrow's own serialisation)."""
    sink = pa.BufferOutputStream()
    footer.write_metadata_file(sink)
    return bytes(sink.getvalue().to_pybytes())


def footer_from_bytes(data: bytes) -> pq.FileMetaData:
    return pq.read_metadata(pa.BufferReader(data))


@dataclass(frozen=True)
class CommitRequest:
    """One partition's staged flushes for one table, as a writer asks them committed."""

    group: str
    #: Unique per request: the answer names it.
    request_id: str
    table: str
    topic: str
    partition: int
    expected: int | None
    next_offset: int
    checkpoint: str | None
    files: Sequence[StagedFile]

    def to_bytes(self) -> bytes:
        doc = {
            "v": CONTROL_VERSION,
            "group": self.group,
            "id": self.request_id,
            "table": self.table,
            "topic": self.topic,
            "partition": self.partition,
            "expected": self.expected,
            "next": self.next_offset,
            "checkpoint": self.checkpoint,
            "files": [
                {
                    "key": f.key,
                    "size": f.size,
                    "footer": base64.b64encode(footer_bytes(f.footer)).decode("ascii"),
                }
                for f in self.files
            ],
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> CommitRequest:
        doc = _load(data)
        try:
            return cls(
                group=str(doc["group"]),
                request_id=str(doc["id"]),
                table=str(doc["table"]),
                topic=str(doc["topic"]),
                partition=int(doc["partition"]),
                expected=None if doc["expected"] is None else int(doc["expected"]),
                next_offset=int(doc["next"]),
                checkpoint=None if doc["checkpoint"] is None else str(doc["checkpoint"]),
                files=tuple(
                    StagedFile(
                        str(f["key"]),
                        footer_from_bytes(base64.b64decode(f["footer"])),
                        int(f["size"]),
                    )
                    for f in doc["files"]
                ),
            )
        except (KeyError, TypeError, ValueError, OSError) as exc:
            raise ControlMessageError(f"malformed commit request: {exc}") from exc


@dataclass(frozen=True)
class CommitResult:
    """The committer's answer to one request."""

    group: str
    request_id: str
    status: Status
    #: Why it was fenced or could not be committed.
    message: str = ""
    conflicts: int = 0
    #: Requests committed in the same snapshot, this one included.
    batch: int = 1

    def to_bytes(self) -> bytes:
        doc = {
            "v": CONTROL_VERSION,
            "group": self.group,
            "id": self.request_id,
            "status": self.status,
            "message": self.message,
            "conflicts": self.conflicts,
            "batch": self.batch,
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> CommitResult:
        doc = _load(data)
        try:
            status = doc["status"]
            if status not in STATUSES:
                raise ValueError(f"unknown status {status!r}")
            return cls(
                group=str(doc["group"]),
                request_id=str(doc["id"]),
                status=status,
                message=str(doc.get("message") or ""),
                conflicts=int(doc.get("conflicts") or 0),
                batch=int(doc.get("batch") or 1),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ControlMessageError(f"malformed commit result: {exc}") from exc


def _load(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ControlMessageError(f"not a control message: {exc}") from exc
    if not isinstance(doc, dict):
        raise ControlMessageError("not a control message: not a JSON object")
    if doc.get("v") != CONTROL_VERSION:
        raise ControlMessageError(f"control message version {doc.get('v')!r} is not supported")
    return doc
