"""A record produced and consumed through the real broker, as the collector and writer will."""

from __future__ import annotations

import asyncio
import os

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from robolake.endpoints import Endpoints
from robolake.episode.topics import CHUNK_TOPIC, DEAD_LETTER_TOPIC, MAX_RECORD_BYTES
from robolake.kafka.librdkafka import librdkafka_producer
from robolake.kafka.producer import DurableProducer, ProducerConfig, aiokafka_producer
from robolake.provision import ensure_topics, robolake_topics


async def _consume(bootstrap: str, topic: str, count: int) -> list[object]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=MAX_RECORD_BYTES,
    )
    await consumer.start()
    try:
        got: list[object] = []
        async with asyncio.timeout(60):
            async for message in consumer:
                got.append(message)
                if len(got) == count:
                    return got
    finally:
        await consumer.stop()
    return got


async def test_record_round_trips_with_key_headers_and_bytes(
    stack_endpoints: Endpoints, kafka_topic: str
) -> None:
    big = os.urandom(MAX_RECORD_BYTES - 64 * 1024)  # a maximal chunk must fit the topic
    small = b"robolake"
    headers = [("episode_id", b"0190f0e6-0000-7000-8000-000000000001"), ("kind", b"chunk")]
    producer = AIOKafkaProducer(
        bootstrap_servers=stack_endpoints.kafka_bootstrap,
        acks="all",
        enable_idempotence=True,
        max_request_size=MAX_RECORD_BYTES,
    )
    await producer.start()
    try:
        meta_small = await producer.send_and_wait(kafka_topic, small, key=b"ep-1", headers=headers)
        meta_big = await producer.send_and_wait(kafka_topic, big, key=b"ep-1", headers=headers)
    finally:
        await producer.stop()
    # Same key, same partition, in order.
    assert meta_small.partition == meta_big.partition
    assert meta_big.offset == meta_small.offset + 1

    messages = await _consume(stack_endpoints.kafka_bootstrap, kafka_topic, 2)
    assert [m.value for m in messages] == [small, big]  # type: ignore[attr-defined]
    assert all(m.key == b"ep-1" for m in messages)  # type: ignore[attr-defined]
    assert all(list(m.headers) == headers for m in messages)  # type: ignore[attr-defined]
    assert messages[0].partition == meta_small.partition  # type: ignore[attr-defined]


async def test_robolake_topics_exist_with_record_size_and_ensure_is_idempotent(
    stack_endpoints: Endpoints,
) -> None:
    specs = robolake_topics()
    await ensure_topics(stack_endpoints.kafka_bootstrap, specs)  # second run: nothing to do
    admin = AIOKafkaAdminClient(bootstrap_servers=stack_endpoints.kafka_bootstrap)
    await admin.start()
    try:
        topics = set(await admin.list_topics())
        assert {CHUNK_TOPIC, DEAD_LETTER_TOPIC} <= topics
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, CHUNK_TOPIC)]
        )
        entries = {
            entry[0]: entry[1]
            for response in responses
            for res in response.resources
            for entry in res[4]
        }
        assert entries["max.message.bytes"] == str(MAX_RECORD_BYTES)
        partitions = await admin.describe_topics([CHUNK_TOPIC])
        assert len(partitions[0]["partitions"]) == specs[0].partitions
    finally:
        await admin.close()


async def test_both_producer_clients_store_the_same_record_on_the_same_partition(
    stack_endpoints: Endpoints, kafka_topic: str
) -> None:
    """librdkafka (the collector's default) and aiokafka (the writer's, ``--producer aiokafka``)
    through robolake's DurableProducer: a maximal record round-trips with key and headers, and
    every key lands on the partition the other client picks, so an episode's records share a
    partition whichever collector produced them."""
    big = os.urandom(MAX_RECORD_BYTES - 64 * 1024)
    headers = [("episode_id", b"0190f0e6-0000-7000-8000-000000000002"), ("kind", b"chunk")]
    keys = [f"episode-{i}".encode() for i in range(24)]
    cfg = ProducerConfig(
        bootstrap=stack_endpoints.kafka_bootstrap, client_id="t", max_batch_size=1 << 20
    )
    for factory in (librdkafka_producer, aiokafka_producer):
        async with DurableProducer(cfg, factory=factory) as producer:
            assert await producer.ping()
            await producer.send(kafka_topic, big, key=b"big", headers=headers)
            for key in keys:
                await producer.send(kafka_topic, key, key=key, headers=headers)
    messages = await _consume(stack_endpoints.kafka_bootstrap, kafka_topic, 2 * (len(keys) + 1))
    partitions: dict[bytes, set[int]] = {}
    bigs = 0
    for message in messages:
        assert list(message.headers) == headers  # type: ignore[attr-defined]
        partitions.setdefault(message.key, set()).add(message.partition)  # type: ignore[attr-defined]
        if message.key == b"big":  # type: ignore[attr-defined]
            assert message.value == big  # type: ignore[attr-defined]
            bigs += 1
        else:
            assert message.value == message.key  # type: ignore[attr-defined]
    assert bigs == 2
    assert set(partitions) == {b"big", *keys}
    assert all(len(found) == 1 for found in partitions.values()), partitions
    assert len({p for found in partitions.values() for p in found}) > 1  # keys did spread
