"""Client libraries side by side, for the tuning decisions in ``docs/capacity.md``.

- Kafka producers at robolake's record size with the collector's durability settings:
  aiokafka (what the collector uses) against confluent-kafka (librdkafka), if installed.
- Shard uploads: the ``minio`` client's ``put_object`` (what the writer uses) against pyarrow's
  S3 filesystem writing the same objects.
- A sweep of the collector's aiokafka producer settings (``linger_ms`` x ``max_batch_size``, and
  lz4 compression when available) with per-send ack latency, see :func:`producer_sweep`.

Each figure is MB/s of payload acknowledged/stored, measured back to back in one process.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.codec import has_lz4

from robolake.bench import ceilings
from robolake.collector.sink import LINGER_MS, MAX_BATCH_BYTES
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


#: The grid of :func:`producer_sweep`; the collector's setting (``KafkaSink``) is 5 ms x 1 MiB.
SWEEP_LINGER_MS = (0, 5, 20)
SWEEP_BATCH_BYTES = (256 * 1024, 1024 * 1024)
#: The collector's current setting, which the lz4 run uses (see ``collector/sink.py``).
#: Sends in flight at once, like that many concurrent device uploads each awaiting its ack.
SWEEP_IN_FLIGHT = 32


@dataclass(frozen=True)
class SweepFigure:
    """One producer setting: acknowledged MB/s (10^6 bytes) and per-send ack latency.

    Latency runs from just before ``await producer.send(...)`` (which waits when the partition's
    batch is full) to the returned future resolving, i.e. what a collector request waits for.
    """

    linger_ms: int
    max_batch_size: int
    compression: str  # "none" or "lz4"
    records: int
    record_bytes: int
    in_flight: int
    mb_per_s: float
    ack_p50_ms: float
    ack_p99_ms: float


def lz4_available() -> bool:
    """Whether aiokafka can compress with lz4 here (it needs the ``cramjam`` package)."""
    return bool(has_lz4())


async def _sweep_point(
    endpoints: Endpoints,
    topic: str,
    payload: bytes,
    *,
    records: int,
    linger_ms: int,
    max_batch_size: int,
    compression: str | None,
    in_flight: int,
) -> SweepFigure:
    producer = AIOKafkaProducer(
        bootstrap_servers=endpoints.kafka_bootstrap,
        acks="all",
        enable_idempotence=True,
        max_request_size=MAX_RECORD_BYTES,
        max_batch_size=max_batch_size,
        linger_ms=linger_ms,
        compression_type=compression,
    )
    await producer.start()
    latencies: list[float] = []
    issued = 0

    async def sender() -> None:
        nonlocal issued
        while issued < records:
            index = issued
            issued += 1
            began = time.perf_counter()
            future = await producer.send(topic, payload, key=str(index % 64).encode())
            await future
            latencies.append(time.perf_counter() - began)

    try:
        # One acknowledged record first, untimed: metadata and connections to every leader.
        await producer.send_and_wait(topic, payload, key=b"warm-up")
        began = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for _ in range(min(in_flight, records)):
                group.create_task(sender())
        seconds = time.perf_counter() - began
    finally:
        await producer.stop()
    latencies.sort()
    return SweepFigure(
        linger_ms=linger_ms,
        max_batch_size=max_batch_size,
        compression=compression or "none",
        records=records,
        record_bytes=len(payload),
        in_flight=in_flight,
        mb_per_s=len(payload) * records / 1e6 / seconds,
        ack_p50_ms=statistics.median(latencies) * 1000,
        ack_p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    )


async def producer_sweep(
    endpoints: Endpoints,
    topic: str,
    *,
    records: int,
    record_bytes: int = 1024 * 1024,
    in_flight: int = SWEEP_IN_FLIGHT,
    progress: Callable[[str], None] | None = None,
) -> list[SweepFigure]:
    """aiokafka producer MB/s and ack latency over ``SWEEP_LINGER_MS`` x ``SWEEP_BATCH_BYTES``,
    then lz4 at the collector's setting if aiokafka can use lz4 (else skipped: ``progress`` is
    told why, and the list has only the 6 uncompressed figures; see :func:`lz4_available`).

    The collector's durability settings throughout: ``acks="all"``, idempotent,
    ``max_request_size=MAX_RECORD_BYTES``. Each setting gets a fresh producer and exactly
    ``records`` sends of ``record_bytes`` random (incompressible, like JPEG) bytes, at most
    ``in_flight`` awaiting their ack at once, plus one untimed warm-up record.
    """
    if records < 1:
        raise ValueError("records must be >= 1")
    say = progress or (lambda _message: None)
    payload = os.urandom(record_bytes)
    plan: list[tuple[int, int, str | None]] = [
        (linger, batch, None) for linger in SWEEP_LINGER_MS for batch in SWEEP_BATCH_BYTES
    ]
    if lz4_available():
        plan.append((LINGER_MS, MAX_BATCH_BYTES, "lz4"))
    else:
        say("lz4 not available to aiokafka (needs `pip install cramjam`); skipping the lz4 run")
    figures = []
    for linger, batch, compression in plan:
        say(
            f"producer sweep: linger_ms={linger} max_batch_size={batch >> 10} KiB "
            f"compression={compression or 'none'}, {records} records"
        )
        figures.append(
            await _sweep_point(
                endpoints,
                topic,
                payload,
                records=records,
                linger_ms=linger,
                max_batch_size=batch,
                compression=compression,
                in_flight=in_flight,
            )
        )
    return figures
