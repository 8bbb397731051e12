"""Helpers for collector integration tests: start collectors, upload, read the topic back."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from aiokafka import AIOKafkaConsumer

from robolake.collector.app import Collector
from robolake.collector.metrics import CollectorMetrics
from robolake.collector.settings import CollectorSettings
from robolake.collector.sink import KafkaSink
from robolake.collector.tickets import MAX_TICKET_CHARS
from robolake.devices.registry import DeviceRegistry
from robolake.endpoints import Endpoints
from robolake.episode.checksums import checksum
from robolake.episode.topics import MAX_RECORD_BYTES
from robolake.launch import ServiceProcess, robolake_argv

TICKET_KEY = "integration-test-ticket-key-0123456789"
ARROW = "application/vnd.apache.arrow.stream"


@dataclass(frozen=True)
class Devices:
    path: Path
    token_a: str  # dev-a at cp-a
    token_b: str  # dev-b at cp-b


@dataclass
class LiveCollector:
    collector: Collector
    client: ClientSession
    base: str


async def start_collector(
    settings: CollectorSettings, endpoints: Endpoints, topic: str
) -> tuple[Collector, TestServer]:
    """An in-process collector on a test server, producing to ``topic`` of the real broker."""
    metrics = CollectorMetrics()
    sink = KafkaSink(endpoints.kafka_bootstrap, metrics=metrics, send_timeout=settings.send_timeout)
    await sink.start()
    collector = Collector(
        settings,
        registry=DeviceRegistry(settings.devices_file),
        sink=sink,
        metrics=metrics,
        topic=topic,
    )
    server = TestServer(collector.build(), host="127.0.0.1", max_field_size=MAX_TICKET_CHARS + 1024)
    await server.start_server()
    return collector, server


async def read_topic(bootstrap: str, topic: str, *, expect: int, timeout: float = 30) -> list[Any]:
    """Every record of ``topic`` from the start, once ``expect`` have arrived (or timeout)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=MAX_RECORD_BYTES,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        async with asyncio.timeout(timeout):
            while len(records) < expect:
                batch = await consumer.getmany(timeout_ms=500)
                for messages in batch.values():
                    records.extend(messages)
            # Anything beyond what we expected also counts (duplicates, strays): read on
            # until the topic has been quiet for a second.
            while batch := await consumer.getmany(timeout_ms=1000):
                for messages in batch.values():
                    records.extend(messages)
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return records


class CollectorProcess(ServiceProcess):
    """A ``robolake collector`` subprocess (the launcher's process) and the URL it serves."""

    base: str = ""


def spawn_collector(
    log_path: Path, env: dict[str, str], *, port: int, devices_file: Path, extra: Sequence[str]
) -> CollectorProcess:
    """``robolake collector`` on ``port`` with no per-device rate limit, so tests that upload
    fast measure the collector rather than its limiter."""
    argv = robolake_argv(
        "collector", "--port", str(port), "--devices-file", str(devices_file),
        "--device-rate", "0", *extra,
    )  # fmt: skip
    process = CollectorProcess.start("collector", argv, env=env, log_path=log_path)
    process.base = f"http://127.0.0.1:{port}"
    return process


def auth(token: str, ticket: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if ticket:
        headers["Upload-Ticket"] = ticket
    return headers


def chunk_headers(token: str, ticket: str, data: bytes) -> dict[str, str]:
    return {**auth(token, ticket), "Content-Type": ARROW, "Robolake-Checksum": checksum(data)}


async def register(client: ClientSession, base: str, token: str, manifest: bytes) -> str:
    """Register an episode; return its upload ticket."""
    async with client.post(
        f"{base}/v1/episodes",
        data=manifest,
        headers={**auth(token), "Content-Type": "application/json"},
    ) as response:
        body = await response.json()
        assert response.status in (200, 201), body
        return str(body["ticket"])


async def wait_ready(
    base: str,
    process: CollectorProcess | None = None,
    *,
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = 60,
) -> None:
    """Poll ``/readyz`` until 200; fail with the process's log if it dies or time runs out."""
    deadline = time.monotonic() + timeout
    connector = aiohttp.TCPConnector(ssl=ssl_context) if ssl_context else None
    async with ClientSession(connector=connector) as session:
        while time.monotonic() < deadline:
            if process is not None:
                assert process.proc.poll() is None, process.log()
            try:
                async with session.get(f"{base}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(
        f"collector at {base} not ready" + (f":\n{process.log()}" if process else "")
    )
