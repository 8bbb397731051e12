"""The collector's Kafka sink: its failures become 503 ``kafka_unavailable``, and a fatal
producer error renews the producer (counted) so the device's retry can succeed."""

from __future__ import annotations

import pytest
from aiokafka.errors import KafkaConnectionError, OutOfOrderSequenceNumber

from fixtures.fake_producer import FakeProducers
from robolake.collector.errors import KafkaUnavailable
from robolake.collector.metrics import CollectorMetrics
from robolake.collector.sink import LINGER_MS, MAX_BATCH_BYTES, KafkaSink
from robolake.episode.topics import MAX_RECORD_BYTES


def sample(metrics: CollectorMetrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(name)


async def test_a_fatal_error_answers_503_renews_the_producer_and_the_retry_is_stored() -> None:
    fakes, metrics = FakeProducers(), CollectorMetrics()
    async with KafkaSink("kafka:9092", metrics=metrics, factory=fakes) as sink:
        fakes.fail_sends(OutOfOrderSequenceNumber())
        with pytest.raises(KafkaUnavailable, match="OutOfOrderSequenceNumber") as caught:
            await sink.send("chunks", b"key", b"value", [("kind", b"chunk")])
        assert caught.value.reason == "kafka_unavailable"
        assert caught.value.retry_after == 2.0
        assert sample(metrics, "robolake_collector_kafka_produce_errors_total") == 1
        assert sample(metrics, "robolake_collector_kafka_producer_renewals_total") == 1
        old, new = fakes.made
        assert old.stopped
        await sink.send("chunks", b"key", b"value", [("kind", b"chunk")])
        assert [(s.topic, s.key, s.headers) for s in new.sent] == [
            ("chunks", b"key", [("kind", b"chunk")])
        ]
    assert fakes.all_stopped()


async def test_a_transient_error_answers_503_without_renewing() -> None:
    fakes, metrics = FakeProducers(), CollectorMetrics()
    async with KafkaSink("kafka:9092", metrics=metrics, factory=fakes) as sink:
        fakes.fail_sends(KafkaConnectionError("broker gone"))
        with pytest.raises(KafkaUnavailable):
            await sink.send("chunks", b"k", b"v", [])
        assert await sink.ping()
    assert len(fakes.made) == 1
    assert sample(metrics, "robolake_collector_kafka_producer_renewals_total") == 0


async def test_the_producer_keeps_the_collectors_settings() -> None:
    fakes = FakeProducers()
    sink = KafkaSink("kafka:9092", metrics=CollectorMetrics(), send_timeout=7.0, factory=fakes)
    await sink.start()
    await sink.stop()
    await sink.stop()
    cfg = fakes.made[0].config
    assert (cfg.bootstrap, cfg.client_id) == ("kafka:9092", "robolake-collector")
    assert (cfg.linger_ms, cfg.max_batch_size) == (LINGER_MS, MAX_BATCH_BYTES)
    assert (cfg.send_timeout_s, cfg.max_request_size) == (7.0, MAX_RECORD_BYTES)
    assert not await sink.ping()
