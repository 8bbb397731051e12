"""``serve()`` owns its resources: whatever fails after the producer started, it is stopped.

The producer is the in-memory fake, the HTTP server is real (on a loopback port).
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
import pytest

from fixtures.fake_producer import FakeProducers
from robolake.collector.errors import CollectorError
from robolake.collector.service import serve
from robolake.collector.settings import CollectorSettings
from robolake.endpoints import Endpoints

ENDPOINTS = Endpoints(
    kafka_bootstrap="kafka-x:9092",
    s3_endpoint="http://127.0.0.1:1",
    s3_access_key="unused",
    s3_secret_key="unused",
)


def settings(tmp_path: Path, port: int) -> CollectorSettings:
    return CollectorSettings(
        host="127.0.0.1",
        port=port,
        devices_file=tmp_path / "devices.json",
        ticket_key=b"unit-test-ticket-key-0123456789abcdef",
        drain_seconds=1.0,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_a_taken_port_is_a_clear_error_and_the_producer_is_stopped(tmp_path: Path) -> None:
    fakes = FakeProducers()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CollectorError, match=f"cannot listen on 127.0.0.1:{port}") as caught:
            await serve(settings(tmp_path, port), ENDPOINTS, stop=asyncio.Event(),
                        producer_factory=fakes)  # fmt: skip
    assert "another --port" in str(caught.value)
    assert isinstance(caught.value.__cause__, OSError)
    assert len(fakes.made) == 1
    assert fakes.made[0].started
    assert fakes.all_stopped()


async def test_stopped_while_waiting_for_kafka_returns_and_leaks_nothing(tmp_path: Path) -> None:
    fakes = FakeProducers(hang_starts=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, stop.set)
    await asyncio.wait_for(
        serve(settings(tmp_path, free_port()), ENDPOINTS, stop=stop, producer_factory=fakes),
        timeout=5,
    )
    assert fakes.made
    assert fakes.all_stopped()


async def test_serves_until_stopped_then_stops_the_producer(tmp_path: Path) -> None:
    fakes = FakeProducers()
    stop = asyncio.Event()
    port = free_port()
    task = asyncio.create_task(
        serve(settings(tmp_path, port), ENDPOINTS, stop=stop, producer_factory=fakes)
    )
    async with aiohttp.ClientSession() as client:
        for _ in range(200):
            try:
                async with client.get(f"http://127.0.0.1:{port}/readyz") as response:
                    assert response.status == 200
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.01)
        else:
            pytest.fail("the collector never listened")
    assert not fakes.made[0].stopped
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert fakes.all_stopped()
