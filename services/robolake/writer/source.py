"""Where the writer's records come from: the narrow consumer interface and its Kafka build.

The run loop (:mod:`robolake.writer.consumer`) needs a dozen operations of a group consumer --
poll a batch, pause/resume/seek partitions, read and commit offsets, the high watermark, and
rebalance callbacks -- and nothing else, in the way arroyo's ``StreamProcessor`` takes a
``Consumer``. Naming them here lets the riskiest logic (a rebalance while a flush uploads, a
storage outage, the memory cap) run deterministically against the in-memory consumer in
``tests/unit/writer/fake_broker.py``, while :func:`kafka_consumer` builds the one real
implementation, aiokafka's, which the integration tests exercise against a broker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition

from robolake.episode.topics import MAX_RECORD_BYTES
from robolake.writer.partition import ConsumedRecord
from robolake.writer.settings import WriterSettings


class RebalanceListener(Protocol):
    """Callbacks a consumer runs inside its poll when the group moves partitions (eager)."""

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None: ...

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None: ...


class Consumer(Protocol):
    """The group consumer operations the writer uses; aiokafka's consumer has them all."""

    def subscribe(self, topics: Sequence[str], listener: RebalanceListener) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> Mapping[TopicPartition, Sequence[ConsumedRecord]]: ...

    def assignment(self) -> set[TopicPartition]: ...

    def pause(self, *partitions: TopicPartition) -> None: ...

    def resume(self, *partitions: TopicPartition) -> None: ...

    def seek(self, partition: TopicPartition, offset: int) -> None: ...

    async def seek_to_beginning(self, *partitions: TopicPartition) -> bool: ...

    async def committed(self, partition: TopicPartition) -> int | None: ...

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None: ...

    def highwater(self, partition: TopicPartition) -> int | None: ...


def kafka_consumer(settings: WriterSettings, bootstrap: str) -> Consumer:
    """The writer's aiokafka consumer: manual commits, earliest reset, fetches sized to the cap.

    Built inside a running event loop (aiokafka binds to it).
    """
    consumer: Consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=settings.group_id,
        client_id="robolake-writer",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=MAX_RECORD_BYTES,
        fetch_max_bytes=settings.fetch_bytes,
        session_timeout_ms=int(settings.session_timeout_s * 1000),
        heartbeat_interval_ms=max(100, int(settings.session_timeout_s * 100)),
        max_poll_interval_ms=600_000,
    )
    return consumer
