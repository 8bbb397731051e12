"""The writer's ``serve()`` owns its resources: whatever fails, what was started is stopped."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace

import pytest
from writer_fakes import MemoryStore

from fixtures.fake_producer import FakeProducers
from robolake.endpoints import Endpoints
from robolake.writer.errors import WriterError
from robolake.writer.service import serve
from robolake.writer.settings import WriterSettings

ENDPOINTS = Endpoints(
    kafka_bootstrap="kafka-x:9092",
    s3_endpoint="http://127.0.0.1:1",
    s3_access_key="unused",
    s3_secret_key="unused",
)


async def test_a_taken_metrics_port_is_a_clear_error() -> None:
    fakes = FakeProducers()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = replace(WriterSettings(), metrics_host="127.0.0.1", metrics_port=port)
        with pytest.raises(WriterError, match=f"cannot serve /metrics on 127.0.0.1:{port}"):
            await serve(
                settings, ENDPOINTS, stop=asyncio.Event(), store=MemoryStore(),
                producer_factory=fakes,
            )  # fmt: skip
    assert fakes.made == []  # it failed before any producer was made


async def test_stopped_while_waiting_for_kafka_returns_and_leaks_nothing() -> None:
    fakes = FakeProducers(hang_starts=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, stop.set)
    settings = replace(WriterSettings(), metrics_port=None)
    await asyncio.wait_for(
        serve(settings, ENDPOINTS, stop=stop, store=MemoryStore(), producer_factory=fakes),
        timeout=5,
    )
    assert fakes.made
    assert fakes.all_stopped()
