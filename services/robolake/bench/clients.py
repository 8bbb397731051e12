"""Client libraries side by side, for the tuning decisions in ``docs/capacity.md``.

- Kafka producers at robolake's record size with the collector's durability settings:
  aiokafka (what the collector uses) against confluent-kafka (librdkafka), if installed.
- Shard uploads: the ``minio`` client's ``put_object`` (what the writer uses) against pyarrow's
  S3 filesystem writing the same objects.

Each figure is MB/s of payload acknowledged/stored, measured back to back in one process.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer

from robolake.bench import ceilings
from robolake.dataset.storage import s3_filesystem
from robolake.endpoints import Endpoints
from robolake.episode.topics import MAX_RECORD_BYTES


@dataclass(frozen=True)
class ClientFigure:
    name: str
    mb_per_s: float


async def aiokafka_produce(endpoints: Endpoints, topic: str, size: int, count: int) -> ClientFigure:
    """``count`` records of ``size`` bytes, 16 in flight, acks=all, idempotent."""
    producer = AIOKafkaProducer(
        bootstrap_servers=endpoints.kafka_bootstrap,
        acks="all",
        enable_idempotence=True,
        max_request_size=MAX_RECORD_BYTES,
        max_batch_size=1024 * 1024,
        linger_ms=5,
    )
    await producer.start()
    payload = os.urandom(size)
    try:
        began = time.perf_counter()
        pending: list[asyncio.Future[object]] = []
        for index in range(count):
            pending.append(await producer.send(topic, payload, key=str(index % 64).encode()))
            if len(pending) >= 16:
                await pending.pop(0)
        await asyncio.gather(*pending)
        seconds = time.perf_counter() - began
    finally:
        await producer.stop()
    return ClientFigure("aiokafka producer", size * count / 1e6 / seconds)


def confluent_produce(
    endpoints: Endpoints, topic: str, size: int, count: int
) -> ClientFigure | None:
    """The same with confluent-kafka, or None when it is not installed."""
    try:
        from confluent_kafka import Producer
    except ImportError:
        return None
    producer = Producer(
        {
            "bootstrap.servers": endpoints.kafka_bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "message.max.bytes": MAX_RECORD_BYTES,
            "linger.ms": 5,
            "batch.size": 1024 * 1024,
            "compression.type": "none",
        }
    )
    payload = os.urandom(size)
    began = time.perf_counter()
    for index in range(count):
        while True:
            try:
                producer.produce(topic, payload, key=str(index % 64).encode())
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(120)
    seconds = time.perf_counter() - began
    return ClientFigure("confluent-kafka producer", size * count / 1e6 / seconds)


def minio_vs_pyarrow(
    endpoints: Endpoints, bucket: str, size: int, count: int
) -> list[ClientFigure]:
    """Upload the same objects with ``minio`` put_object (the ceiling's loop) and with pyarrow's
    S3 filesystem."""
    minio = ceilings.minio_put(endpoints, bucket, size, count)
    payload = os.urandom(size)
    fs = s3_filesystem(endpoints)
    began = time.perf_counter()
    for index in range(count):
        with fs.open_output_stream(f"{bucket}/pyarrow/{index}.bin") as out:
            out.write(payload)
    arrow_s = time.perf_counter() - began
    return [
        ClientFigure("minio put_object", minio.mb_per_s),
        ClientFigure("pyarrow S3FileSystem", size * count / 1e6 / arrow_s),
    ]


async def compare(
    endpoints: Endpoints, topic: str, *, records: int, objects: int
) -> list[ClientFigure]:
    """All comparisons; record size 1 MiB, object size 64 MiB."""
    figures = [await aiokafka_produce(endpoints, topic, 1 << 20, records)]
    confluent = await asyncio.to_thread(confluent_produce, endpoints, topic, 1 << 20, records)
    if confluent is not None:
        figures.append(confluent)
    figures += await asyncio.to_thread(
        minio_vs_pyarrow, endpoints, f"bench-{uuid.uuid4().hex[:8]}", 64 << 20, objects
    )
    return figures
