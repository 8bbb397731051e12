"""The producer lifecycle shared by collector and writer, against the in-memory fake producer.

Each failure is scripted in order (``FakeProducers``) and backoff never waits (``NoWait``), so
these run in milliseconds and say exactly which aiokafka producer saw what.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import warnings

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
    UnsupportedVersionError,
)

from fixtures.fake_producer import FakeProducers, NoWait
from robolake.kafka.errors import NotAcknowledged, ProducerClosed, ProducerStartFailed
from robolake.kafka.producer import DurableProducer, ProducerConfig, start_when_reachable

BOOTSTRAP = "kafka-a:9092,kafka-b:9092"


def config(**overrides: object) -> ProducerConfig:
    return ProducerConfig(bootstrap=BOOTSTRAP, client_id="test-producer", **overrides)  # type: ignore[arg-type]


def durable(
    fakes: FakeProducers, sleep: NoWait | None = None, **overrides: object
) -> DurableProducer:
    return DurableProducer(config(**overrides), factory=fakes, sleep=sleep or NoWait())


# -- start ---------------------------------------------------------------------------------


async def test_start_retries_with_backoff_then_raises_an_error_naming_the_bootstrap() -> None:
    fakes, sleep = FakeProducers(), NoWait()
    fakes.fail_starts(*[KafkaConnectionError("Unable to bootstrap")] * 5)
    producer = durable(fakes, sleep, start_attempts=5, max_backoff_s=3.0)
    with pytest.raises(ProducerStartFailed) as caught:
        await producer.start()
    error = caught.value
    assert error.retriable
    assert error.bootstrap == BOOTSTRAP
    assert f"cannot reach Kafka at {BOOTSTRAP} after 5 attempts" in str(error)
    assert "ROBOLAKE_KAFKA_BOOTSTRAP" in str(error)
    assert sleep.delays == [0.5, 1.0, 2.0, 3.0]
    assert not producer.running
    # Every client that failed to start was stopped: none is left with open connections.
    assert len(fakes.made) == 5
    assert fakes.all_stopped()


async def test_start_succeeds_once_the_broker_answers() -> None:
    fakes = FakeProducers()
    fakes.fail_starts(KafkaConnectionError("down"), KafkaConnectionError("down"))
    producer = durable(fakes)
    await producer.start()
    assert producer.running
    assert [p.stopped for p in fakes.made] == [True, True, False]
    await producer.send("t", b"v", key=b"k")
    assert fakes.made[2].sent[0].value == b"v"
    await producer.stop()


async def test_a_refusal_waiting_cannot_fix_is_not_retried_and_its_client_is_stopped() -> None:
    fakes, sleep = FakeProducers(), NoWait()
    fakes.fail_starts(UnsupportedVersionError("broker too old"))
    producer = durable(fakes, sleep)
    with pytest.raises(ProducerStartFailed, match="waiting will not fix this") as caught:
        await producer.start()
    assert not caught.value.retriable
    assert sleep.delays == []
    assert len(fakes.made) == 1
    assert fakes.made[0].stopped


async def test_a_start_that_hangs_times_out_and_its_client_is_stopped() -> None:
    fakes = FakeProducers(hang_starts=True)
    producer = durable(fakes, start_attempts=2, send_timeout_s=0.01)
    with pytest.raises(ProducerStartFailed, match="TimeoutError"):
        await producer.start()
    assert len(fakes.made) == 2
    assert fakes.all_stopped()


async def test_an_unexpected_error_in_start_still_stops_the_client() -> None:
    fakes = FakeProducers()
    fakes.fail_starts(ValueError("bad config"))
    with pytest.raises(ValueError, match="bad config"):
        await durable(fakes).start()
    assert fakes.made[0].stopped


async def test_start_twice_keeps_one_client() -> None:
    fakes = FakeProducers()
    async with durable(fakes) as producer:
        await producer.start()
    assert len(fakes.made) == 1


# -- renewal after fatal errors ------------------------------------------------------------


@pytest.mark.parametrize(
    "fatal", [OutOfOrderSequenceNumber, UnknownProducerId, ProducerFenced], ids=lambda e: e.__name__
)
async def test_a_fatal_error_renews_the_producer_and_the_next_send_goes_to_the_new_one(
    fatal: type[Exception],
) -> None:
    fakes = FakeProducers()
    renewals: list[None] = []
    producer = DurableProducer(
        config(), factory=fakes, sleep=NoWait(), on_renewal=lambda: renewals.append(None)
    )
    await producer.start()
    fakes.fail_sends(fatal())
    with pytest.raises(NotAcknowledged) as caught:
        await producer.send("chunks", b"first", key=b"k")
    assert caught.value.retriable  # a retry goes out on the fresh producer
    assert caught.value.topic == "chunks"
    old, new = fakes.made
    assert old.stopped
    assert not new.stopped
    assert renewals == [None]
    await producer.send("chunks", b"again", key=b"k")
    assert new.sent[0].value == b"again"
    assert old.sent == []
    await producer.stop()
    assert new.stopped


async def test_a_renewal_that_cannot_start_keeps_the_old_producer_and_the_next_fatal_retries() -> (
    None
):
    fakes = FakeProducers()
    producer = durable(fakes)
    await producer.start()
    fakes.fail_starts(KafkaConnectionError("still restarting"))
    fakes.fail_sends(OutOfOrderSequenceNumber(), OutOfOrderSequenceNumber())
    with pytest.raises(NotAcknowledged):
        await producer.send("t", b"1", key=None)
    original, failed_fresh = fakes.made
    assert failed_fresh.stopped  # the fresh one that did not start leaks nothing
    assert not original.stopped  # and the old one stays until a replacement runs
    with pytest.raises(NotAcknowledged):
        await producer.send("t", b"2", key=None)
    assert len(fakes.made) == 3
    assert original.stopped
    await producer.send("t", b"3", key=None)
    assert fakes.made[2].sent[0].value == b"3"
    await producer.stop()


async def test_transient_send_errors_are_retriable_and_keep_the_producer() -> None:
    fakes = FakeProducers()
    async with durable(fakes) as producer:
        fakes.fail_sends(KafkaConnectionError("broker gone"))
        with pytest.raises(NotAcknowledged, match=f"Kafka at {BOOTSTRAP} did not acknowledge") as e:
            await producer.send("t", b"v", key=None)
        assert e.value.retriable
        fakes.fail_sends(MessageSizeTooLargeError())
        with pytest.raises(NotAcknowledged) as e:
            await producer.send("t", b"v", key=None)
        assert not e.value.retriable
    assert len(fakes.made) == 1


async def test_a_send_that_hangs_times_out_as_retriable() -> None:
    fakes = FakeProducers(hang_sends=True)
    async with durable(fakes, send_timeout_s=0.01) as producer:
        with pytest.raises(NotAcknowledged, match="TimeoutError") as caught:
            await producer.send("t", b"v", key=None)
        assert caught.value.retriable
    assert len(fakes.made) == 1


# -- stop ----------------------------------------------------------------------------------


async def test_stop_is_safe_twice_and_before_start() -> None:
    fakes = FakeProducers()
    never_started = durable(fakes)
    await never_started.stop()
    await never_started.stop()
    producer = durable(fakes)
    await producer.start()
    await producer.stop()
    await producer.stop()
    assert [p.stops for p in fakes.made] == [1]


async def test_a_producer_not_running_refuses_sends_and_a_second_start() -> None:
    fakes = FakeProducers()
    producer = durable(fakes)
    with pytest.raises(ProducerClosed):
        await producer.send("t", b"v", key=None)
    await producer.start()
    await producer.stop()
    with pytest.raises(ProducerClosed, match="not running"):
        await producer.send("t", b"v", key=None)
    with pytest.raises(ProducerClosed, match="make a new one"):
        await producer.start()


async def test_async_with_stops_on_error() -> None:
    fakes = FakeProducers()
    with pytest.raises(RuntimeError):
        async with durable(fakes):
            raise RuntimeError("boom")
    assert fakes.made[0].stopped


async def test_a_producer_collected_while_running_warns() -> None:
    fakes = FakeProducers()
    held = [durable(fakes)]
    await held[0].start()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        held.clear()  # the last reference: collected here
        gc.collect()
    messages = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert len(messages) == 1, messages
    assert "unstopped DurableProducer test-producer" in messages[0]


async def test_a_stopped_or_never_started_producer_does_not_warn() -> None:
    fakes = FakeProducers()
    stopped = durable(fakes)
    await stopped.start()
    await stopped.stop()
    never_started = durable(fakes)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del stopped, never_started
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert fakes.all_stopped()


async def test_ping_tells_whether_a_broker_answers() -> None:
    fakes = FakeProducers()
    producer = durable(fakes)
    assert not await producer.ping()
    async with producer:
        assert await producer.ping()
        fakes.broker_down = KafkaConnectionError("no broker")
        assert not await producer.ping()


# -- waiting for Kafka at boot -------------------------------------------------------------


async def test_start_when_reachable_tries_again_while_the_error_is_retriable() -> None:
    fakes = FakeProducers()
    fakes.fail_starts(KafkaConnectionError("down"), KafkaConnectionError("down"))
    producer = durable(fakes, start_attempts=1)
    assert await start_when_reachable(producer, asyncio.Event(), pause_s=0)
    assert producer.running
    await producer.stop()


async def test_start_when_reachable_gives_up_at_once_when_told_to_stop() -> None:
    fakes = FakeProducers(hang_starts=True)
    producer = durable(fakes)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.01, stop.set)
    assert not await start_when_reachable(producer, stop, pause_s=0)
    assert not producer.running
    assert fakes.all_stopped()  # the attempt in progress was cancelled and its client stopped


async def test_start_when_reachable_raises_what_waiting_cannot_fix() -> None:
    fakes = FakeProducers()
    fakes.fail_starts(UnsupportedVersionError("too old"))
    with pytest.raises(ProducerStartFailed, match="waiting will not fix this"):
        await start_when_reachable(durable(fakes), asyncio.Event(), pause_s=0)


async def test_the_real_producer_is_stopped_after_a_failed_start() -> None:
    """aiokafka's own producer (no broker: a refused port) is stopped, so it never warns."""
    producer = DurableProducer(
        ProducerConfig(bootstrap=f"127.0.0.1:{unused_port()}", client_id="t", start_attempts=2),
        sleep=NoWait(),
    )
    with pytest.raises(ProducerStartFailed, match="KafkaConnectionError"):
        await producer.start()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        del producer
        gc.collect()


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
