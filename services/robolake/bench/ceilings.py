"""The ceilings robolake's figures are divided by, measured on the same machine in the same run.

- Kafka: the broker's own ``ProducerPerformance`` (acks=all, idempotent, no compression) and
  ``ConsumerPerformance`` at robolake's record size, from the cached ``kafka-tools`` jar.
- MinIO: a loop of ``put_object`` at the shard size through the same ``minio`` client the writer
  uses (multipart above its part size): the storage ceiling as robolake can reach it.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import time
import uuid
from dataclasses import dataclass

from minio import Minio

from robolake.endpoints import Endpoints
from robolake.episode.topics import MAX_RECORD_BYTES
from robolake.stack import jvm, kafka


@dataclass(frozen=True)
class Ceiling:
    """One measured ceiling."""

    name: str
    mb_per_s: float
    detail: str


def _tool(main_class: str, args: list[str], log4j: str) -> str:
    command = [
        jvm.java(),
        "-Xmx512m",
        f"-Dlog4j2.configurationFile={log4j}",
        "-cp",
        str(kafka.lib_dir() / "*"),
        main_class,
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"{main_class} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return result.stdout


def kafka_producer(
    endpoints: Endpoints, topic: str, record_size: int, records: int, log4j: str
) -> Ceiling:
    """``ProducerPerformance`` with the collector's durability settings."""
    out = _tool(
        "org.apache.kafka.tools.ProducerPerformance",
        [
            "--topic",
            topic,
            "--num-records",
            str(records),
            "--record-size",
            str(record_size),
            "--throughput",
            "-1",
            "--producer-props",
            f"bootstrap.servers={endpoints.kafka_bootstrap}",
            "acks=all",
            "enable.idempotence=true",
            "compression.type=none",
            f"max.request.size={MAX_RECORD_BYTES}",
            "linger.ms=5",
            "batch.size=1048576",
        ],
        log4j,
    )
    match = re.search(r"records/sec \(([\d.]+) MB/sec\)", out.strip().splitlines()[-1])
    if match is None:
        raise RuntimeError(f"cannot parse ProducerPerformance output:\n{out[-1000:]}")
    # Kafka's tools count MB as 1024 * 1024 bytes; robolake reports 10^6-byte MB.
    mb = float(match.group(1)) * 1024 * 1024 / 1e6
    return Ceiling("kafka ProducerPerformance", mb, f"{records} x {record_size} B, acks=all")


def kafka_consumer(endpoints: Endpoints, topic: str, records: int, log4j: str) -> Ceiling:
    """``ConsumerPerformance`` reading what the producer test wrote."""
    out = _tool(
        "org.apache.kafka.tools.ConsumerPerformance",
        [
            "--bootstrap-server",
            endpoints.kafka_bootstrap,
            "--topic",
            topic,
            "--messages",
            str(records),
            "--timeout",
            "60000",
            "--group",
            f"bench-{uuid.uuid4().hex[:8]}",
        ],
        log4j,
    )
    # CSV: start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, ...
    row = [line for line in out.splitlines() if line and line[0].isdigit()][-1].split(",")
    mb = float(row[3]) * 1024 * 1024 / 1e6
    return Ceiling("kafka ConsumerPerformance", mb, f"{row[4].strip()} records")


def minio_put(endpoints: Endpoints, bucket: str, size: int, count: int) -> Ceiling:
    """PUT ``count`` objects of ``size`` bytes, one after another, as the writer uploads shards."""
    client = Minio(
        endpoints.s3_host,
        access_key=endpoints.s3_access_key,
        secret_key=endpoints.s3_secret_key,
        secure=endpoints.s3_secure,
    )
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    payload = os.urandom(size)
    began = time.perf_counter()
    for index in range(count):
        client.put_object(
            bucket, f"bench/{index:05d}.bin", io.BytesIO(payload), size, part_size=16 * 1024 * 1024
        )
    seconds = time.perf_counter() - began
    return Ceiling("MinIO put_object", size * count / 1e6 / seconds, f"{count} x {size >> 20} MiB")
