"""Where acknowledged records go: a narrow interface with one real implementation (Kafka).

The app depends only on :class:`RecordSink`; tests of pure logic can hand it an in-memory sink,
while the integration tests use :class:`KafkaSink` against the real broker. A successful
:meth:`RecordSink.send` means the record is durable (``acks=all``, idempotent producer); any
failure raises :class:`~robolake.collector.errors.KafkaUnavailable` so the HTTP edge answers 503
and the device retries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Final, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)

from robolake.collector.errors import KafkaUnavailable
from robolake.collector.metrics import CollectorMetrics
from robolake.episode.topics import MAX_RECORD_BYTES

log = logging.getLogger(__name__)

#: Errors after which an idempotent producer cannot go on (its sequence numbers or producer id
#: no longer match the broker's, e.g. after a broker restart lost in-flight batches). A fresh
#: producer (new producer id) is the only way forward; without one the collector would answer
#: 503 forever.
_FATAL_PRODUCER_ERRORS = (
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    InvalidProducerEpoch,
    ProducerFenced,
)

Headers = Sequence[tuple[str, bytes]]


class RecordSink(Protocol):
    """Durable destination of the collector's records."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(
        self, topic: str, key: bytes, value: bytes | bytearray, headers: Headers
    ) -> None:
        """Return once the record is durably stored; raise KafkaUnavailable otherwise."""
        ...

    async def ping(self) -> bool:
        """Whether the sink can take records now (for ``/readyz``)."""
        ...


#: The collector's producer settings (the bench's producer sweep reads them from here).
LINGER_MS: Final = 0
MAX_BATCH_BYTES: Final = 1024 * 1024


class KafkaSink:
    """An idempotent ``acks=all`` aiokafka producer tuned for large, incompressible records.

    No compression: chunks are mostly JPEG/PNG bytes already. ``linger_ms`` is 0: chunk
    records are ~1 MiB, so a batch holds one record and lingering can only add delay; the
    producer sweep of ``make bench`` found no throughput gain from 5 or 20 ms (numbers in
    docs/capacity.md). ``max_request_size`` fits the largest chunk record.
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        metrics: CollectorMetrics,
        send_timeout: float = 15.0,
        linger_ms: int = LINGER_MS,
        max_batch_size: int = MAX_BATCH_BYTES,
    ) -> None:
        self._bootstrap = bootstrap
        self._metrics = metrics
        self._send_timeout = send_timeout
        self._linger_ms = linger_ms
        self._max_batch_size = max_batch_size
        self._producer = self._new_producer()
        self._renewing = asyncio.Lock()
        self._started = False

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            acks="all",
            enable_idempotence=True,
            max_request_size=MAX_RECORD_BYTES,
            max_batch_size=self._max_batch_size,
            linger_ms=self._linger_ms,
            compression_type=None,
            request_timeout_ms=int(self._send_timeout * 1000),
            client_id="robolake-collector",
        )

    async def _renew(self, failed: AIOKafkaProducer) -> None:
        """Replace a producer that hit a fatal error with a fresh one (once per failure)."""
        async with self._renewing:
            if self._producer is not failed or not self._started:
                return  # another request renewed it already, or we are stopping
            fresh = self._new_producer()
            try:
                await fresh.start()
            except KafkaError as exc:
                await fresh.stop()
                log.warning("could not start a fresh producer yet: %r", exc)
                return
            self._producer = fresh
            self._metrics.producer_renewals.inc()
            log.warning("replaced the Kafka producer after a fatal error (new producer id)")
        try:
            async with asyncio.timeout(self._send_timeout):
                await failed.stop()
        except (KafkaError, TimeoutError) as exc:
            log.info("stopping the failed producer: %r", exc)

    async def start(self) -> None:
        """Connect to Kafka; raises KafkaUnavailable if it cannot be reached."""
        try:
            await self._producer.start()
        except KafkaError as exc:
            await self._producer.stop()
            raise KafkaUnavailable(
                f"cannot reach Kafka at {self._bootstrap}: {exc}", retry_after=5
            ) from exc
        self._started = True

    async def stop(self) -> None:
        """Flush and close; safe to call twice."""
        if self._started:
            self._started = False
            await self._producer.stop()

    async def send(
        self, topic: str, key: bytes, value: bytes | bytearray, headers: Headers
    ) -> None:
        began = time.perf_counter()
        producer = self._producer
        try:
            async with asyncio.timeout(self._send_timeout):
                await producer.send_and_wait(topic, value, key=key, headers=list(headers))
        except (KafkaError, TimeoutError) as exc:
            self._metrics.produce_errors.inc()
            log.warning("produce to %s failed: %r", topic, exc)
            if isinstance(exc, _FATAL_PRODUCER_ERRORS):
                await self._renew(producer)
            raise KafkaUnavailable(
                f"Kafka did not acknowledge the record ({type(exc).__name__}); retry later",
                retry_after=2.0,
            ) from exc
        self._metrics.produce_latency.observe(time.perf_counter() - began)

    async def ping(self) -> bool:
        """Whether the producer currently knows a live broker for the cluster."""
        if not self._started:
            return False
        try:
            async with asyncio.timeout(2):
                await self._producer.client.fetch_all_metadata()
        except (KafkaError, TimeoutError):
            return False
        return True
