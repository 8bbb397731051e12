"""The one durable Kafka producer of robolake, with an explicit lifecycle (aiokafka's manner).

A successful :meth:`DurableProducer.send` means every in-sync replica has the record (``acks=all``,
idempotent producer). Around aiokafka's producer this adds what each service would otherwise
have to remember:

- :meth:`~DurableProducer.start` retries a bounded number of times, then raises
  :class:`~robolake.kafka.errors.ProducerStartFailed` naming the bootstrap servers; a client
  that failed to start is stopped, so no connection or sender task is left behind.
- After a fatal idempotence error (the broker lost the producer's sequence, e.g. across a broker
  restart) the aiokafka producer can never send again; it is replaced by a fresh one (new
  producer id), otherwise the service would fail every send until restarted.
- :meth:`~DurableProducer.stop` is safe to call twice, ``async with`` starts and stops, and a
  producer garbage-collected while running warns with :class:`ResourceWarning`.

aiokafka's producer is made by an injected :data:`ProducerFactory`: the services use
:func:`aiokafka_producer`, unit tests an in-memory fake (``tests/fixtures/fake_producer.py``),
and the integration tests exercise the real one against a broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Protocol, Self

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaError,
    KafkaTimeoutError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)

from robolake.endpoints import ENV_KAFKA_BOOTSTRAP
from robolake.episode.topics import MAX_RECORD_BYTES
from robolake.kafka.errors import (
    KafkaClientError,
    NotAcknowledged,
    ProducerClosed,
    ProducerStartFailed,
)

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]]

#: Errors after which an idempotent producer cannot go on: its sequence numbers or producer id
#: no longer match the broker's (e.g. a broker restart lost in-flight batches). Only a fresh
#: producer, with a new producer id, gets past them. Another client's errors say so themselves
#: with ``fatal = True`` (librdkafka's, robolake.kafka.librdkafka).
FATAL_PRODUCER_ERRORS: Final = (
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    InvalidProducerEpoch,
    ProducerFenced,
)


class MetadataClient(Protocol):
    """The cluster client inside a producer, asked for metadata to tell whether Kafka is up."""

    async def fetch_all_metadata(self) -> object: ...


class ProducerClient(Protocol):
    """The slice of :class:`aiokafka.AIOKafkaProducer` used here; a fake implements just this."""

    @property
    def client(self) -> MetadataClient: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | bytearray | None,
        *,
        key: bytes | None,
        headers: list[tuple[str, bytes]],
    ) -> object: ...


@dataclass(frozen=True)
class ProducerConfig:
    """How one producer connects, batches and waits.

    ``acks=all`` and idempotence are not options: every robolake producer acknowledges only
    what is stored. ``send_timeout_s`` bounds a send, a start attempt and the stop of a replaced
    producer, and is the broker request timeout. Start attempts back off from
    ``start_backoff_s`` doubling up to ``max_backoff_s``.
    """

    bootstrap: str
    client_id: str
    linger_ms: int = 0
    max_batch_size: int = 16 * 1024
    max_request_size: int = MAX_RECORD_BYTES
    send_timeout_s: float = 30.0
    start_attempts: int = 5
    start_backoff_s: float = 0.5
    max_backoff_s: float = 10.0


ProducerFactory = Callable[[ProducerConfig], ProducerClient]


def aiokafka_producer(config: ProducerConfig) -> ProducerClient:
    """The real producer. No compression: robolake's records are mostly JPEG/PNG bytes already."""
    producer: ProducerClient = AIOKafkaProducer(
        bootstrap_servers=config.bootstrap,
        client_id=config.client_id,
        acks="all",
        enable_idempotence=True,
        max_request_size=config.max_request_size,
        max_batch_size=config.max_batch_size,
        linger_ms=config.linger_ms,
        compression_type=None,
        request_timeout_ms=int(config.send_timeout_s * 1000),
    )
    return producer


def _transient(exc: BaseException) -> bool:
    """Whether waiting may fix ``exc``: aiokafka's flag, though it leaves its timeouts unflagged."""
    if isinstance(exc, TimeoutError | KafkaTimeoutError):
        return True
    return bool(getattr(exc, "retriable", False))


class AsyncLifecycle:
    """``async with`` for a client with ``start()`` and ``stop()``: one place for the
    protocol every Kafka-facing client here follows (aiokafka's lifecycle)."""

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class DurableProducer(AsyncLifecycle):
    """An idempotent ``acks=all`` producer that restarts itself after fatal errors."""

    _client: ProducerClient | None = None  # a class default, so __del__ works if __init__ fails

    def __init__(
        self,
        config: ProducerConfig,
        *,
        factory: ProducerFactory = aiokafka_producer,
        on_renewal: Callable[[], object] | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        """``on_renewal`` is told each time a producer is replaced (the collector counts them);
        ``sleep`` paces start attempts (tests pass one that does not wait)."""
        self.config = config
        self._factory = factory
        self._on_renewal = on_renewal
        self._sleep = sleep
        self._stopped = False
        self._renewing = asyncio.Lock()

    @property
    def running(self) -> bool:
        """Started and not stopped."""
        return self._client is not None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, with bounded retries; raise ProducerStartFailed naming the bootstrap servers.

        Calling it on a running producer does nothing; after :meth:`stop` it raises
        ProducerClosed (aiokafka's producers cannot be started twice either).
        """
        cfg = self.config
        if self._stopped:
            raise ProducerClosed(f"the {cfg.client_id} producer was stopped; make a new one")
        if self._client is not None:
            return
        delay, waited = cfg.start_backoff_s, 0.0
        last: BaseException | None = None
        for attempt in range(1, cfg.start_attempts + 1):
            try:
                client = await self._connect()
            except (KafkaError, TimeoutError) as exc:
                if not _transient(exc):
                    raise ProducerStartFailed(
                        f"Kafka at {cfg.bootstrap} refused the {cfg.client_id} producer "
                        f"({type(exc).__name__}: {exc}); waiting will not fix this: check the "
                        "broker's version, listeners and ACLs",
                        bootstrap=cfg.bootstrap,
                        retriable=False,
                    ) from exc
                last = exc
                if attempt < cfg.start_attempts:
                    log.warning(
                        "Kafka at %s not reachable yet (attempt %d of %d: %r); retrying in %.1f s",
                        cfg.bootstrap,
                        attempt,
                        cfg.start_attempts,
                        exc,
                        delay,
                    )
                    await self._sleep(delay)
                    waited += delay
                    delay = min(2 * delay, cfg.max_backoff_s)
                continue
            if self._stopped:  # stop() was called while we connected
                await self._discard(client)
                raise ProducerClosed(f"the {cfg.client_id} producer was stopped while starting")
            self._client = client
            return
        raise ProducerStartFailed(
            f"cannot reach Kafka at {cfg.bootstrap} after {cfg.start_attempts} attempts over "
            f"{waited:.1f} s (last: {type(last).__name__}: {last}); check that the broker is up "
            f"and that {ENV_KAFKA_BOOTSTRAP} names its listener",
            bootstrap=cfg.bootstrap,
            retriable=True,
        ) from last

    async def stop(self) -> None:
        """Flush what is in flight and close; safe to call twice, or before :meth:`start`."""
        self._stopped = True
        client, self._client = self._client, None
        if client is not None:
            await client.stop()

    def __del__(self, _warn: Callable[..., object] = warnings.warn) -> None:
        # Like aiokafka's clients: __del__ cannot stop anything (stopping is async), only say so.
        if self._client is not None:
            _warn(
                f"unstopped DurableProducer {self.config.client_id} for {self.config.bootstrap}; "
                "await stop() or use `async with`",
                ResourceWarning,
                source=self,
            )

    # -- producing -------------------------------------------------------------------------

    async def send(
        self,
        topic: str,
        value: bytes | bytearray | None,
        *,
        key: bytes | None,
        headers: Headers = (),
    ) -> None:
        """Return once the record is stored; raise NotAcknowledged (or ProducerClosed) if not.

        A fatal producer error renews the producer before raising, so the caller's retry goes
        out on a fresh one.
        """
        client = self._client
        if client is None:
            raise ProducerClosed(
                f"send to {topic} on the {self.config.client_id} producer, which is not running"
            )
        try:
            async with asyncio.timeout(self.config.send_timeout_s):
                await client.send_and_wait(topic, value, key=key, headers=list(headers))
        except (KafkaError, TimeoutError) as exc:
            fatal = isinstance(exc, FATAL_PRODUCER_ERRORS) or getattr(exc, "fatal", False) is True
            if fatal:
                await self._renew(client)
            raise NotAcknowledged(
                f"Kafka at {self.config.bootstrap} did not acknowledge a record to {topic} "
                f"({type(exc).__name__}: {exc})",
                topic=topic,
                retriable=fatal or _transient(exc),
            ) from exc

    async def ping(self, timeout_s: float = 2.0) -> bool:
        """Whether the producer currently knows a live broker of the cluster."""
        client = self._client
        if client is None:
            return False
        try:
            async with asyncio.timeout(timeout_s):
                await client.client.fetch_all_metadata()
        except (KafkaError, TimeoutError):
            return False
        return True

    # -- internals -------------------------------------------------------------------------

    async def _connect(self) -> ProducerClient:
        """One started client; one that failed to start is stopped before the error propagates
        (aiokafka leaves its connections and sender task open otherwise, and warns)."""
        client = self._factory(self.config)
        try:
            async with asyncio.timeout(self.config.send_timeout_s):
                await client.start()
        except BaseException:
            await self._discard(client)
            raise
        return client

    async def _discard(self, client: ProducerClient) -> None:
        """Stop a client we no longer use, without letting its failure hide the reason why."""
        try:
            async with asyncio.timeout(self.config.send_timeout_s):
                await client.stop()
        except (KafkaError, TimeoutError) as exc:
            log.info("stopping a discarded %s producer: %r", self.config.client_id, exc)

    async def _renew(self, failed: ProducerClient) -> None:
        """Replace ``failed`` with a fresh producer, once however many sends saw it fail.

        If no fresh producer starts now, ``failed`` stays in place and the next fatal error
        tries again, so renewal never blocks a send for longer than one start attempt.
        """
        async with self._renewing:
            if self._client is not failed:
                return  # renewed by another send already, or stopped
            try:
                fresh = await self._connect()
            except (KafkaError, TimeoutError) as exc:
                log.warning(
                    "could not start a fresh %s producer yet (Kafka at %s): %r",
                    self.config.client_id,
                    self.config.bootstrap,
                    exc,
                )
                return
            if self._client is not failed:  # stopped while the fresh one started
                await self._discard(fresh)
                return
            self._client = fresh
        log.warning(
            "replaced the %s producer after a fatal error (new producer id)",
            self.config.client_id,
        )
        if self._on_renewal is not None:
            self._on_renewal()
        await self._discard(failed)


class Startable(Protocol):
    """Anything whose ``start()`` raises a :class:`KafkaClientError` it may be worth retrying."""

    async def start(self) -> None: ...


async def start_when_reachable(
    resource: Startable, stop: asyncio.Event, *, pause_s: float = 5.0
) -> bool:
    """Start ``resource``, round after round while its error is retriable; False once ``stop``.

    Services may come up before the broker does (or while it restarts), so a service waits for
    Kafka rather than exits; each round is a bounded :meth:`DurableProducer.start`, whose error
    names the bootstrap servers. ``stop`` cancels a round at once, so SIGTERM never waits out a
    backoff. Errors that waiting cannot fix propagate.
    """
    while not stop.is_set():
        starting = asyncio.ensure_future(resource.start())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not starting.done():
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
        if starting.cancelled():
            return False
        try:
            starting.result()
        except KafkaClientError as exc:
            if not exc.retriable:
                raise
            log.warning("%s; trying again in %.1f s", exc, pause_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=pause_s)
            continue
        return not stop.is_set()
    return False
