"""In-memory fakes for writer unit tests: an object store, consumed records, a clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from robolake.episode.records import RecordMeta
from robolake.writer.storage import StoredObject


class MemoryStore:
    """:class:`robolake.writer.storage.ObjectStore` in a dict."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.objects[key] = data

    def get(self, key: str) -> bytes | None:
        return self.objects.get(key)

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    def list(self, prefix: str) -> list[StoredObject]:
        return [
            StoredObject(k, len(v)) for k, v in sorted(self.objects.items()) if k.startswith(prefix)
        ]


@dataclass
class Record:
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    topic: str = "chunks"
    partition: int = 0


def record(offset: int, meta: RecordMeta, value: bytes) -> Record:
    return Record(offset, meta.key, value, meta.headers())


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
