"""The collector's runner: parser refusals and errors outside the middleware are problems.

A bare application on loopback (no Kafka): what is checked here is the runner and its
connection class, which the collector process uses; the integration test runs the process.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from robolake.collector.metrics import CollectorMetrics
from robolake.collector.protocol import MAX_FIELD_SIZE, MAX_HEADERS, CollectorRunner
from robolake.collector.tickets import MAX_TICKET_CHARS


async def _ok(request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok")


async def _broken_expect(request: web.Request) -> web.StreamResponse | None:
    raise RuntimeError("a bug in an Expect handler")


@pytest.fixture
async def served() -> AsyncIterator[tuple[int, CollectorMetrics]]:
    app = web.Application()
    app.router.add_get("/ok", _ok)
    app.router.add_post("/expect", _ok, expect_handler=_broken_expect)
    metrics = CollectorMetrics()
    runner = CollectorRunner(app, metrics=metrics, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield port, metrics
    await runner.cleanup()


async def _exchange(port: int, raw: bytes) -> tuple[int, str, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        lines = head.decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    finally:
        writer.close()
    return int(lines[0].split()[1]), headers.get("content-type", ""), body


def _get(*headers: bytes) -> bytes:
    return b"GET /ok HTTP/1.1\r\nHost: t\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"


async def test_headers_up_to_the_limits_pass_and_beyond_them_are_malformed_request(
    served: tuple[int, CollectorMetrics],
) -> None:
    port, metrics = served
    ticket_sized = b"Upload-Ticket: " + b"t" * MAX_TICKET_CHARS
    assert (await _exchange(port, _get(ticket_sized)))[0] == 200
    many = [b"X-H%d: v" % i for i in range(MAX_HEADERS - 1)]  # plus Host
    assert (await _exchange(port, _get(*many)))[0] == 200
    for raw in (
        _get(b"X-Big: " + b"a" * (MAX_FIELD_SIZE + 1)),
        _get(*many, b"X-One-Too-Many: v"),
    ):
        status, content_type, body = await _exchange(port, raw)
        assert (status, content_type) == (400, "application/problem+json"), body
        assert json.loads(body)["reason"] == "malformed_request"
    assert metrics.rejections.labels("malformed_request")._value.get() == 2
    assert metrics.requests.labels("unmatched", "UNKNOWN", "400")._value.get() == 2


async def test_an_error_outside_the_middleware_is_internal_error_and_logged(
    served: tuple[int, CollectorMetrics], caplog: pytest.LogCaptureFixture
) -> None:
    port, metrics = served
    raw = b"POST /expect HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
    with caplog.at_level(logging.INFO, logger="robolake.collector.protocol"):
        status, content_type, body = await _exchange(port, raw)
    assert (status, content_type) == (500, "application/problem+json"), body
    assert json.loads(body)["reason"] == "internal_error"
    assert metrics.rejections.labels("internal_error")._value.get() == 1
    [record] = [r for r in caplog.records if r.name == "robolake.collector.protocol"]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert "a bug in an Expect handler" in str(record.exc_info[1])
