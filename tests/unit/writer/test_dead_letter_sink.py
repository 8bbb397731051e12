"""The writer's dead-letter sink renews its producer after a fatal error, as the collector's
does, and retries what is retriable until the dead letter is stored."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, ProducerFenced

from fixtures.fake_producer import FakeProducers, NoWait
from robolake.kafka.errors import NotAcknowledged, ProducerClosed
from robolake.writer.deadletters import KafkaDeadLetters
from robolake.writer.partition import DeadLetter


@dataclass
class Record:
    topic: str = "chunks"
    partition: int = 3
    offset: int = 41
    key: bytes | None = b"episode-1"
    value: bytes | None = b"\x00garbage"
    headers: list[tuple[str, bytes]] = field(default_factory=lambda: [("kind", b"chunk")])


LETTER = DeadLetter(Record(), "record_invalid", "not an Arrow stream")


def sink(fakes: FakeProducers, sleep: NoWait, **kwargs: float) -> KafkaDeadLetters:
    return KafkaDeadLetters("kafka:9092", "dlq", factory=fakes, sleep=sleep, **kwargs)


async def test_a_fatal_error_renews_the_producer_and_the_dead_letter_is_stored() -> None:
    fakes, sleep = FakeProducers(), NoWait()
    async with sink(fakes, sleep) as dead_letters:
        fakes.fail_sends(ProducerFenced())
        await dead_letters.send(LETTER)
        old, new = fakes.made
        assert old.stopped
        assert old.sent == []
        (stored,) = new.sent
        assert (stored.topic, stored.key, stored.value) == ("dlq", b"episode-1", b"\x00garbage")
        headers = dict(stored.headers)
        assert headers["kind"] == b"chunk"
        assert headers["dlq_reason"] == b"record_invalid"
        assert headers["dlq_source_offset"] == b"41"
        assert sleep.delays == [0.5]
    assert fakes.all_stopped()


async def test_transient_errors_are_retried_with_capped_backoff() -> None:
    fakes, sleep = FakeProducers(), NoWait()
    async with sink(fakes, sleep, max_backoff_s=3.0) as dead_letters:
        fakes.fail_sends(*[KafkaConnectionError("down")] * 4)
        await dead_letters.send(LETTER)
    assert sleep.delays == [0.5, 1.0, 2.0, 3.0]
    assert len(fakes.made) == 1
    assert len(fakes.made[0].sent) == 1


async def test_a_failure_retrying_cannot_fix_is_raised_to_the_caller() -> None:
    fakes, sleep = FakeProducers(), NoWait()
    async with sink(fakes, sleep) as dead_letters:
        fakes.fail_sends(MessageSizeTooLargeError())
        with pytest.raises(NotAcknowledged) as caught:
            await dead_letters.send(LETTER)
        assert not caught.value.retriable
    assert sleep.delays == []


async def test_a_sink_not_started_refuses_and_stop_is_safe_twice() -> None:
    fakes, sleep = FakeProducers(), NoWait()
    dead_letters = sink(fakes, sleep)
    with pytest.raises(ProducerClosed):
        await dead_letters.send(LETTER)
    await dead_letters.start()
    await dead_letters.stop()
    await dead_letters.stop()
    assert [p.stops for p in fakes.made] == [1]
    assert fakes.made[0].config.client_id == "robolake-writer-dlq"
