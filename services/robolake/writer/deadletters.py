"""The dead-letter topic: where records go that the writer cannot store, with the reason.

A dead letter keeps the record's key, value and headers and gains ``dlq_*`` headers
(``robolake.episode.records.dead_letter_headers``). It is produced -- acknowledged by all
in-sync replicas -- before the offsets covering the original record are committed, so a bad
record is never silently lost; after a crash it may be dead-lettered twice (at least once).
The producer's lifecycle -- bounded start, renewal after a fatal error, stop -- is
:class:`robolake.kafka.producer.DurableProducer`'s, shared with the collector.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from robolake.episode.records import dead_letter_headers
from robolake.kafka.errors import NotAcknowledged
from robolake.kafka.producer import (
    AsyncLifecycle,
    DurableProducer,
    ProducerConfig,
    ProducerFactory,
    aiokafka_producer,
)
from robolake.writer.partition import DeadLetter

log = logging.getLogger(__name__)


class DeadLetterSink(Protocol):
    """Durable destination of dead letters."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, letter: DeadLetter) -> None:
        """Return once the dead letter is durably stored; retry until then."""
        ...


class KafkaDeadLetters(AsyncLifecycle):
    """Dead letters to a Kafka topic with an idempotent ``acks=all`` producer."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        max_backoff_s: float = 10.0,
        factory: ProducerFactory = aiokafka_producer,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        """``sleep`` paces retries (tests pass one that does not wait)."""
        self.topic = topic
        self._max_backoff_s = max_backoff_s
        self._sleep = sleep
        self.producer = DurableProducer(
            ProducerConfig(
                bootstrap=bootstrap,
                client_id="robolake-writer-dlq",
                send_timeout_s=40.0,  # aiokafka's default request timeout, as before
                max_backoff_s=max_backoff_s,
            ),
            factory=factory,
            sleep=sleep,
        )

    async def start(self) -> None:
        """Connect to Kafka; raises ProducerStartFailed (naming the bootstrap servers) if not."""
        await self.producer.start()

    async def stop(self) -> None:
        """Flush and close; safe to call twice."""
        await self.producer.stop()

    async def send(self, letter: DeadLetter) -> None:
        """Return once stored, retrying with backoff while the failure is retriable.

        A failure that retrying cannot fix (``retriable`` false, e.g. the topic refuses the
        record) is raised to the caller rather than retried forever; so is a send on a sink
        that is not running.
        """
        record = letter.record
        headers = dead_letter_headers(
            list(record.headers or ()),
            letter.reason,
            letter.message,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )
        delay = 0.5
        while True:
            try:
                await self.producer.send(self.topic, record.value, key=record.key, headers=headers)
                return
            except NotAcknowledged as exc:
                if not exc.retriable:
                    raise
                log.warning(
                    "dead letter of %s[%d]@%d not acknowledged (%s); retrying in %.1f s",
                    record.topic,
                    record.partition,
                    record.offset,
                    exc,
                    delay,
                )
                await self._sleep(delay)
                delay = min(delay * 2, self._max_backoff_s)
