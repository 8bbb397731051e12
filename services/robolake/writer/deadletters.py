"""The dead-letter topic: where records go that the writer cannot store, with the reason.

A dead letter keeps the record's key, value and headers and gains ``dlq_*`` headers
(``robolake.episode.records.dead_letter_headers``). It is produced -- acknowledged by all
in-sync replicas -- before the offsets covering the original record are committed, so a bad
record is never silently lost; after a crash it may be dead-lettered twice (at least once).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from robolake.episode.records import dead_letter_headers
from robolake.episode.topics import MAX_RECORD_BYTES
from robolake.writer.partition import DeadLetter

log = logging.getLogger(__name__)


class DeadLetterSink(Protocol):
    """Durable destination of dead letters."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, letter: DeadLetter) -> None:
        """Return once the dead letter is durably stored; retry until then."""
        ...


class KafkaDeadLetters:
    """Dead letters to a Kafka topic with an idempotent ``acks=all`` producer."""

    def __init__(self, bootstrap: str, topic: str, *, max_backoff_s: float = 10.0) -> None:
        self.topic = topic
        self._bootstrap = bootstrap
        self._max_backoff_s = max_backoff_s
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                acks="all",
                enable_idempotence=True,
                max_request_size=MAX_RECORD_BYTES,
                client_id="robolake-writer-dlq",
            )
            await producer.start()
            self._producer = producer

    async def stop(self) -> None:
        """Flush and close; safe to call twice."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def send(self, letter: DeadLetter) -> None:
        assert self._producer is not None, "start() the dead-letter sink first"
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
                await self._producer.send_and_wait(
                    self.topic, record.value, key=record.key, headers=headers
                )
                return
            except KafkaError as exc:
                log.warning(
                    "dead letter of %s[%d]@%d not acknowledged (%r); retrying in %.1f s",
                    record.topic,
                    record.partition,
                    record.offset,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff_s)
