"""An in-memory Kafka for the writer's run loop: one topic, a consumer group, rebalances on cue.

It implements :class:`robolake.writer.source.Consumer` the way the loop relies on aiokafka:
``getmany`` returns records of assigned, unpaused partitions from their positions and runs
pending rebalances first (eager: revoke everything, then assign), commits are refused
(``CommitFailedError``) for partitions the member no longer owns, ``committed`` reads the
group's offsets. Each poll advances an injected clock, so age limits and retry backoffs are
counted in polls, not seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError
from writer_fakes import FakeClock, Record

from robolake.episode.records import RecordMeta
from robolake.writer.source import RebalanceListener

TOPIC = "chunks"


@dataclass
class FakeBroker:
    """The topic's partitions and the group's committed offsets and owners."""

    partitions: int = 2
    log: dict[int, list[Record]] = field(default_factory=dict)
    committed: dict[int, int] = field(default_factory=dict)
    owner: dict[int, FakeConsumer] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for p in range(self.partitions):
            self.log.setdefault(p, [])

    def produce(self, partition: int, meta: RecordMeta | None, value: bytes, **raw: object) -> int:
        """Append a record (from its meta, or raw key/headers); return its offset."""
        offset = len(self.log[partition])
        if meta is not None:
            record = Record(offset, meta.key, value, meta.headers(), TOPIC, partition)
        else:
            record = Record(
                offset, raw.get("key"), value, list(raw.get("headers", [])), TOPIC, partition
            )  # type: ignore[arg-type]
        self.log[partition].append(record)
        return offset

    def end(self, partition: int) -> int:
        return len(self.log[partition])

    def assign(self, member: FakeConsumer, partitions: Iterable[int]) -> None:
        """Rebalance ``member`` onto ``partitions`` at its next poll (eager protocol: it revokes
        everything it has, then waits until their previous owners have revoked them)."""
        member.pending = {TopicPartition(TOPIC, p) for p in partitions}

    def steal(self, member: FakeConsumer, partition: int) -> None:
        """The group moved ``partition`` to ``member`` without waiting for its owner (a member
        frozen past its session timeout): the old owner's commits are refused from now on."""
        self.owner[partition] = member


class FakeConsumer:
    """One group member."""

    def __init__(
        self,
        broker: FakeBroker,
        clock: FakeClock,
        *,
        tick_s: float = 0.1,
        max_records: int = 50,
        on_poll: Callable[[], None] | None = None,
    ) -> None:
        self.broker = broker
        self.clock = clock
        self.tick_s = tick_s
        self.max_records = max_records
        self.on_poll = on_poll
        self.listener: RebalanceListener | None = None
        self.assigned: set[TopicPartition] = set()
        self.paused: set[TopicPartition] = set()
        self.positions: dict[TopicPartition, int] = {}
        #: Assignment to take at the next poll (None: no rebalance pending).
        self.pending: set[TopicPartition] | None = None
        self.polls = 0
        #: (partition, offset) of every commit this member made.
        self.commits: list[tuple[int, int]] = []
        #: The committed offset each partition had when this member was assigned it.
        self.assigned_at: dict[int, int] = {}
        self.started = self.stopped = False

    def subscribe(self, topics: Sequence[str], listener: RebalanceListener) -> None:
        assert list(topics) == [TOPIC]
        self.listener = listener

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True
        self._release()

    def _release(self) -> None:
        for tp in self.assigned:
            if self.broker.owner.get(tp.partition) is self:
                del self.broker.owner[tp.partition]

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> Mapping[TopicPartition, Sequence[Record]]:
        if self.pending is not None and self.listener is not None:
            new, self.pending = self.pending, None
            await self.listener.on_partitions_revoked(sorted(self.assigned))
            self._release()
            while any(self.broker.owner.get(tp.partition) not in (None, self) for tp in new):
                await asyncio.sleep(0.002)  # the other members are still revoking
            for tp in new:
                self.broker.owner[tp.partition] = self
            self.assigned = new
            self.paused &= new
            self.positions = {tp: self.broker.committed.get(tp.partition, 0) for tp in new}
            self.assigned_at.update({tp.partition: self.positions[tp] for tp in new})
            await self.listener.on_partitions_assigned(sorted(new))
        self.polls += 1
        self.clock.now += self.tick_s
        if self.on_poll is not None:
            self.on_poll()
        batch: dict[TopicPartition, Sequence[Record]] = {}
        for tp in sorted(self.assigned - self.paused):
            position = self.positions[tp]
            records = self.broker.log[tp.partition][position : position + self.max_records]
            if records:
                batch[tp] = records
                self.positions[tp] = position + len(records)
        await asyncio.sleep(0 if batch else 0.002)
        return batch

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused.update(p for p in partitions if p in self.assigned)

    def resume(self, *partitions: TopicPartition) -> None:
        self.paused.difference_update(partitions)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.positions[partition] = offset

    async def seek_to_beginning(self, *partitions: TopicPartition) -> bool:
        for tp in partitions:
            self.positions[tp] = 0
        return True

    async def committed(self, partition: TopicPartition) -> int | None:
        return self.broker.committed.get(partition.partition)

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        for tp in offsets:
            if self.broker.owner.get(tp.partition) is not self:
                # As aiokafka does: the member rejoins, and learns what it still owns.
                owned = [p for p, member in self.broker.owner.items() if member is self]
                self.pending = {TopicPartition(TOPIC, p) for p in owned}
                raise CommitFailedError("the group rebalanced; this member no longer owns it")
        for tp, offset in offsets.items():
            self.broker.committed[tp.partition] = offset
            self.commits.append((tp.partition, offset))

    def highwater(self, partition: TopicPartition) -> int | None:
        # As aiokafka's: asking for a partition the member does not hold is a programming error.
        assert partition in self.assigned, "Partition is not assigned"
        return self.broker.end(partition.partition)
