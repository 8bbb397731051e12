"""Where acknowledged records go: a narrow interface with one real implementation (Kafka).

The app depends only on :class:`RecordSink`; tests of pure logic can hand it an in-memory sink,
while the integration tests use :class:`KafkaSink` against the real broker. A successful
:meth:`RecordSink.send` means the record is durable (``acks=all``, idempotent producer); any
failure raises :class:`~robolake.collector.errors.KafkaUnavailable` so the HTTP edge answers 503
and the device retries. The Kafka client is librdkafka's by default (``--producer``; measured
in docs/performance.md), aiokafka's on request. The producer's lifecycle -- bounded start,
renewal after a fatal error, stop -- is :class:`robolake.kafka.producer.DurableProducer`'s,
shared with the writer.
"""

from __future__ import annotations

import logging
import time
from typing import Final, Protocol

from robolake.collector.errors import KafkaUnavailable
from robolake.collector.metrics import CollectorMetrics
from robolake.kafka.errors import KafkaClientError
from robolake.kafka.librdkafka import librdkafka_producer
from robolake.kafka.producer import (
    AsyncLifecycle,
    DurableProducer,
    Headers,
    ProducerConfig,
    ProducerFactory,
    aiokafka_producer,
)

log = logging.getLogger(__name__)


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


#: ``--producer`` names (collector/settings.py's PRODUCERS) to the clients that make producers.
PRODUCER_FACTORIES: Final[dict[str, ProducerFactory]] = {
    "librdkafka": librdkafka_producer,
    "aiokafka": aiokafka_producer,
}

#: The collector's producer settings (the bench's producer sweep reads them from here).
LINGER_MS: Final = 0
MAX_BATCH_BYTES: Final = 1024 * 1024


class KafkaSink(AsyncLifecycle):
    """An idempotent ``acks=all`` producer tuned for large, incompressible records.

    ``linger_ms`` is 0: chunk records are ~1 MiB, so a batch holds one record and lingering can
    only add delay; the producer sweep of ``make bench`` found no throughput gain from 5 or
    20 ms (numbers in docs/capacity.md). ``max_request_size`` fits the largest chunk record.
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        metrics: CollectorMetrics,
        send_timeout: float = 15.0,
        linger_ms: int = LINGER_MS,
        max_batch_size: int = MAX_BATCH_BYTES,
        factory: ProducerFactory = librdkafka_producer,
    ) -> None:
        self._metrics = metrics
        self.producer = DurableProducer(
            ProducerConfig(
                bootstrap=bootstrap,
                client_id="robolake-collector",
                linger_ms=linger_ms,
                max_batch_size=max_batch_size,
                send_timeout_s=send_timeout,
            ),
            factory=factory,
            on_renewal=metrics.producer_renewals.inc,
        )

    async def start(self) -> None:
        """Connect to Kafka; raises ProducerStartFailed (naming the bootstrap servers) if not."""
        await self.producer.start()

    async def stop(self) -> None:
        """Flush and close; safe to call twice."""
        await self.producer.stop()

    async def send(
        self, topic: str, key: bytes, value: bytes | bytearray, headers: Headers
    ) -> None:
        began = time.perf_counter()
        try:
            await self.producer.send(topic, value, key=key, headers=headers)
        except KafkaClientError as exc:
            self._metrics.produce_errors.inc()
            log.warning("produce to %s failed: %s", topic, exc)
            cause = exc.__cause__ or exc
            raise KafkaUnavailable(
                f"Kafka did not acknowledge the record ({type(cause).__name__}); retry later",
                retry_after=2.0,
            ) from exc
        self._metrics.produce_latency.observe(time.perf_counter() - began)

    async def ping(self) -> bool:
        """Whether the producer currently knows a live broker for the cluster."""
        return await self.producer.ping()
