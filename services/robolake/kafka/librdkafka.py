"""A :class:`~robolake.kafka.producer.ProducerClient` on librdkafka (confluent-kafka), for the
collector's hot path.

Why a second client: under bench-peers' load, aiokafka's pure-Python produce path was ~45% of
the collector's CPU samples (docs/performance.md): it builds each produce request by joining
and copying the ~1 MiB record at every nesting level of the wire format, and checksums the
batch in Python. librdkafka copies the value once into its queue and does the batching, framing,
CRC and socket writes in its own C threads, outside the GIL.

The bridge to asyncio: :meth:`~LibrdkafkaProducer.send_and_wait` calls ``produce()`` (which
never blocks: a full local queue raises ``BufferError`` and is retried after a short wait) with a
delivery callback, and one daemon thread per producer calls ``poll()``, which runs those
callbacks; each resolves its future on the event loop with ``call_soon_threadsafe``.

Errors are raised as aiokafka's :class:`~aiokafka.errors.KafkaError` (the vocabulary
:class:`~robolake.kafka.producer.DurableProducer` already speaks), carrying librdkafka's own
``retriable`` flag; a fatal error of librdkafka's idempotent producer is
:class:`FatalProducerError` (``fatal = True``), after which :class:`DurableProducer` replaces
the producer, as it does after aiokafka's sequence errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any, Final

from aiokafka.errors import KafkaError, KafkaTimeoutError
from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException, Message, Producer

from robolake.kafka.producer import ProducerConfig

log = logging.getLogger(__name__)

#: How long the poll thread blocks waiting for delivery reports before looking at its stop flag.
POLL_INTERVAL_S: Final = 0.1
#: librdkafka's own bound on a readiness check's metadata request (``DurableProducer.ping``'s).
PING_TIMEOUT_S: Final = 2.0
#: Pause before trying ``produce()`` again when librdkafka's local queue is full.
QUEUE_FULL_PAUSE_S: Final = 0.005

#: librdkafka's error codes that a retry (of the send, or of the start) can get past.
_TRANSIENT_CODES: Final = frozenset(
    {
        RdKafkaError._MSG_TIMED_OUT,
        RdKafkaError._TIMED_OUT,
        RdKafkaError._TRANSPORT,
        RdKafkaError._ALL_BROKERS_DOWN,
        RdKafkaError._RESOLVE,
        RdKafkaError.REQUEST_TIMED_OUT,
        RdKafkaError.NOT_ENOUGH_REPLICAS,
        RdKafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        RdKafkaError.LEADER_NOT_AVAILABLE,
        RdKafkaError.NOT_LEADER_FOR_PARTITION,
        RdKafkaError.UNKNOWN_TOPIC_OR_PART,
    }
)


class LibrdkafkaError(KafkaError):  # type: ignore[misc]  # aiokafka ships no type hints
    """A librdkafka error in aiokafka's terms: ``retriable`` as librdkafka (or its code) says."""

    def __init__(self, error: RdKafkaError) -> None:
        super().__init__(f"{error.name()}: {error.str()}")
        self.code: int = error.code()
        self.retriable = bool(error.retriable()) or self.code in _TRANSIENT_CODES


class FatalProducerError(LibrdkafkaError):
    """librdkafka's idempotent producer can no longer guarantee ordering or exactly-once (e.g.
    the broker lost its sequence numbers): only a fresh producer gets past it."""

    fatal = True


def _error(error: RdKafkaError) -> KafkaError:
    if error.fatal():
        return FatalProducerError(error)
    if error.code() in (RdKafkaError._MSG_TIMED_OUT, RdKafkaError._TIMED_OUT):
        return KafkaTimeoutError(f"{error.name()}: {error.str()}")
    return LibrdkafkaError(error)


def librdkafka_config(config: ProducerConfig) -> dict[str, Any]:
    """librdkafka's settings for robolake's guarantees (acks=all, idempotent, no compression).

    ``message.timeout.ms`` (how long librdkafka keeps retrying one record) is a little under
    the send timeout, so librdkafka reports a timeout before the caller's own deadline cuts the
    wait, and a record is not left retrying after its request was already answered 503.
    """
    send_ms = int(config.send_timeout_s * 1000)
    return {
        "bootstrap.servers": config.bootstrap,
        "client.id": config.client_id,
        "acks": "all",
        "enable.idempotence": True,
        "compression.type": "none",
        # Java's and aiokafka's partitioner (murmur2 of the key), not librdkafka's default
        # (CRC32): an episode's records are keyed by its id and must share one partition
        # whichever client produced them, e.g. while collectors are upgraded one by one.
        "partitioner": "murmur2_random",
        "linger.ms": config.linger_ms,
        "batch.size": max(config.max_batch_size, 1),
        "message.max.bytes": config.max_request_size,
        "message.timeout.ms": max(send_ms - 500, 1000),
        "request.timeout.ms": send_ms,
        "socket.timeout.ms": send_ms,
        # librdkafka logs through the Python logger (not stderr), at warning and above.
        "logger": log,
        "log_level": 4,
    }


class _Cluster:
    """``client.fetch_all_metadata()`` (what :meth:`DurableProducer.ping` asks) on librdkafka.

    The wait is bounded by librdkafka itself (``timeout_s``), not only by the caller's deadline,
    so a broker outage with ``/readyz`` probed every second cannot pile up blocked threads.
    """

    def __init__(self, producer: Producer, timeout_s: float) -> None:
        self._producer = producer
        self._timeout_s = timeout_s

    async def fetch_all_metadata(self, timeout_s: float | None = None) -> object:
        wait = self._timeout_s if timeout_s is None else timeout_s
        try:
            return await asyncio.to_thread(self._producer.list_topics, timeout=wait)
        except KafkaException as exc:
            raise _error(exc.args[0]) from exc


class LibrdkafkaProducer:
    """One librdkafka producer with asyncio sends; see the module's docstring."""

    def __init__(self, config: ProducerConfig) -> None:
        self.config = config
        self._producer = Producer(librdkafka_config(config))
        self._cluster = _Cluster(self._producer, PING_TIMEOUT_S)
        self._stopping = threading.Event()
        self._poller: threading.Thread | None = None

    @property
    def client(self) -> _Cluster:
        return self._cluster

    async def start(self) -> None:
        """Connect (librdkafka connects lazily: asking for metadata is the proof), then poll."""
        await self._cluster.fetch_all_metadata(max(self.config.send_timeout_s - 0.5, 0.5))
        if self._poller is None:
            self._poller = threading.Thread(
                target=self._poll, name=f"{self.config.client_id}-librdkafka-poll", daemon=True
            )
            self._poller.start()

    async def stop(self) -> None:
        """Deliver what is queued (bounded by the send timeout), then stop polling."""
        remaining = await asyncio.to_thread(self._producer.flush, self.config.send_timeout_s)
        if remaining:
            log.warning(
                "%d records of the %s producer not delivered at stop",
                remaining,
                self.config.client_id,
            )
            await asyncio.to_thread(self._producer.purge)
            await asyncio.to_thread(self._producer.poll, 0)  # their futures fail now
        self._stopping.set()
        if self._poller is not None:
            await asyncio.to_thread(self._poller.join)
            self._poller = None

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | bytearray | None,
        *,
        key: bytes | None,
        headers: list[tuple[str, bytes]],
    ) -> object:
        """Queue the record and wait for the in-sync replicas' acknowledgement."""
        loop = asyncio.get_running_loop()
        delivered: asyncio.Future[None] = loop.create_future()

        def report(error: RdKafkaError | None, message: Message) -> None:
            # In the poll thread: hand the outcome to the loop, never touch the future here.
            # Only the error crosses: confluent-kafka copies the value into ``message``, and
            # keeping it until the waiter wakes would hold a third copy of every record in
            # flight. A loop already closed (its waiter is gone) has no one left to tell.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, delivered, error)

        # produce() takes read-only buffers only: the collector's body buffer is copied once.
        payload = bytes(value) if isinstance(value, bytearray) else value
        wire_headers: list[tuple[str, str | bytes | None]] = list(headers)
        while True:
            try:
                self._producer.produce(
                    topic, value=payload, key=key, headers=wire_headers, on_delivery=report
                )
                break
            except BufferError:  # the local queue is full: librdkafka is behind
                await asyncio.sleep(QUEUE_FULL_PAUSE_S)
            except KafkaException as exc:
                raise _error(exc.args[0]) from exc
        await delivered
        return None

    def _poll(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(POLL_INTERVAL_S)


def _resolve(future: asyncio.Future[None], error: RdKafkaError | None) -> None:
    if future.done():  # the waiter gave up (timeout, cancellation)
        return
    if error is not None:
        future.set_exception(_error(error))
    else:
        future.set_result(None)


def librdkafka_producer(config: ProducerConfig) -> LibrdkafkaProducer:
    """The :data:`~robolake.kafka.producer.ProducerFactory` of librdkafka producers."""
    return LibrdkafkaProducer(config)
