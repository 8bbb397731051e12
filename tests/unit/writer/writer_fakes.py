"""In-memory fakes for writer unit tests: object stores, consumed records, a clock, dead letters."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka.errors import KafkaConnectionError

from robolake.episode.records import RecordMeta
from robolake.writer.errors import StorageUnavailable
from robolake.writer.partition import DeadLetter
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


class ScriptedStore(MemoryStore):
    """The in-memory store with faults on cue: failing puts (an outage) and a gate that holds
    shard uploads (a flush caught half-way). ``put`` runs in the writer's threads."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_puts = 0
        self.failed = 0
        self.gate: threading.Event | None = None
        self.held = threading.Event()  # set once an upload waits at the gate
        #: Called (in the writer's thread) at every refused write, to observe the moment.
        self.on_fail: Callable[[], None] | None = None
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes, content_type: str) -> None:
        with self._lock:
            if self.fail_puts > 0:
                self.fail_puts -= 1
                self.failed += 1
                if self.on_fail is not None:
                    self.on_fail()
                raise StorageUnavailable("scripted outage: the store refuses writes", retry_after=0)
        gate = self.gate
        if gate is not None and key.startswith("shards/"):
            self.held.set()
            if not gate.wait(timeout=60):
                raise AssertionError("the test never opened the upload gate")
        super().put(key, data, content_type)


class FakeDeadLetters:
    """:class:`robolake.writer.deadletters.DeadLetterSink` in a list, failing or held on cue."""

    def __init__(self) -> None:
        self.sent: list[DeadLetter] = []
        self.fail = 0
        self.attempts = 0
        self.gate: asyncio.Event | None = None

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, letter: DeadLetter) -> None:
        self.attempts += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail > 0:
            self.fail -= 1
            raise KafkaConnectionError("scripted: the dead-letter topic is unreachable")
        self.sent.append(letter)
