"""The librdkafka producer client: its settings, its errors in aiokafka's terms, and a start
against a port where no broker listens (real librdkafka, no broker needed)."""

from __future__ import annotations

import socket

import pytest
from aiokafka.errors import KafkaTimeoutError
from confluent_kafka import KafkaError as RdKafkaError

from fixtures.fake_producer import FakeProducers, NoWait
from robolake.kafka.errors import NotAcknowledged, ProducerStartFailed
from robolake.kafka.librdkafka import (
    FatalProducerError,
    LibrdkafkaError,
    _error,
    librdkafka_config,
    librdkafka_producer,
)
from robolake.kafka.producer import DurableProducer, ProducerConfig


def config(**overrides: object) -> ProducerConfig:
    values: dict[str, object] = {"bootstrap": "127.0.0.1:9", "client_id": "t"} | overrides
    return ProducerConfig(**values)  # type: ignore[arg-type]


def test_settings_keep_robolakes_guarantees() -> None:
    settings = librdkafka_config(config(send_timeout_s=15.0, linger_ms=0))
    assert settings["acks"] == "all"
    assert settings["enable.idempotence"] is True
    assert settings["compression.type"] == "none"
    assert settings["linger.ms"] == 0
    # Keyed records land where aiokafka's (Java's) partitioner puts them.
    assert settings["partitioner"] == "murmur2_random"
    # librdkafka gives up on a record before the caller's deadline cuts the wait.
    assert settings["message.timeout.ms"] < 15_000
    assert settings["message.max.bytes"] == config().max_request_size


def test_a_fatal_error_is_fatal_and_renews_the_producer() -> None:
    error = _error(RdKafkaError(RdKafkaError._FATAL, "sequence lost", fatal=True))
    assert isinstance(error, FatalProducerError)
    assert error.fatal is True


@pytest.mark.parametrize(
    ("code", "retriable"),
    [
        (RdKafkaError._TRANSPORT, True),
        (RdKafkaError._ALL_BROKERS_DOWN, True),
        (RdKafkaError.NOT_ENOUGH_REPLICAS, True),
        (RdKafkaError.MSG_SIZE_TOO_LARGE, False),
        (RdKafkaError.TOPIC_AUTHORIZATION_FAILED, False),
    ],
)
def test_errors_carry_whether_waiting_can_fix_them(code: int, retriable: bool) -> None:
    error = _error(RdKafkaError(code, "x"))
    assert isinstance(error, LibrdkafkaError)
    assert error.retriable is retriable
    assert not getattr(error, "fatal", False)


def test_librdkafkas_own_retriable_flag_is_kept() -> None:
    assert _error(RdKafkaError(RdKafkaError.UNKNOWN, "x", retriable=True)).retriable is True


def test_a_timed_out_record_is_a_timeout() -> None:
    assert isinstance(_error(RdKafkaError(RdKafkaError._MSG_TIMED_OUT, "x")), KafkaTimeoutError)


async def test_durable_producer_renews_after_librdkafkas_fatal_error() -> None:
    fakes = FakeProducers()
    renewals: list[None] = []
    producer = DurableProducer(
        config(), factory=fakes, sleep=NoWait(), on_renewal=lambda: renewals.append(None)
    )
    await producer.start()
    fakes.fail_sends(_error(RdKafkaError(RdKafkaError._FATAL, "fenced", fatal=True)))
    with pytest.raises(NotAcknowledged) as caught:
        await producer.send("chunks", b"first", key=b"k")
    assert caught.value.retriable
    old, new = fakes.made
    assert old.stopped
    assert not new.stopped
    assert renewals == [None]
    await producer.stop()


async def test_a_non_retriable_send_error_is_not_retriable() -> None:
    fakes = FakeProducers()
    producer = DurableProducer(config(), factory=fakes, sleep=NoWait())
    await producer.start()
    fakes.fail_sends(_error(RdKafkaError(RdKafkaError.MSG_SIZE_TOO_LARGE, "too big")))
    with pytest.raises(NotAcknowledged) as caught:
        await producer.send("chunks", b"x", key=b"k")
    assert not caught.value.retriable
    assert len(fakes.made) == 1  # not renewed
    await producer.stop()


async def test_start_without_a_broker_fails_as_retriable_naming_the_bootstrap() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        bootstrap = f"127.0.0.1:{port}"
        producer = DurableProducer(
            config(bootstrap=bootstrap, send_timeout_s=2.0, start_attempts=2),
            factory=librdkafka_producer,
            sleep=NoWait(),
        )
        with pytest.raises(ProducerStartFailed) as caught:
            await producer.start()
    assert caught.value.retriable
    assert bootstrap in str(caught.value)
    assert not producer.running
    await producer.stop()
