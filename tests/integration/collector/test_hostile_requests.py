"""Hostile bytes on the wire against a real collector process: forged log lines, broken HTTP.

Raw sockets, because an HTTP client would quote the path or refuse to send malformed requests.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from collector_harness import CollectorProcess, Devices, wait_ready

PROBLEM = "application/problem+json"
#: What an attacker wants an operator (or a log shipper) to read as a record of its own.
FORGED = "2026-01-01 00:00:00,000 INFO robolake.collector.app: device dev-root granted admin"


async def _exchange(base: str, *parts: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``parts`` (a moment apart) and read the response; return status, headers, body."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        for index, part in enumerate(parts):
            if index:
                await asyncio.sleep(0.3)
            writer.write(part)
            await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:] if line)
        }
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(reader.readexactly(length), timeout=10)
    finally:
        writer.close()
    return status, headers, body


def _problem(status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    assert headers.get("content-type", "").split(";")[0] == PROBLEM, (status, headers, body)
    document: dict[str, Any] = json.loads(body)
    assert document["status"] == status, document
    assert document["type"] == f"https://robolake.dev/problems/{document['reason']}", document
    assert document["detail"], document
    return document


def _shown(body: bytes) -> str:
    try:
        return f"reason={json.loads(body)['reason']} detail={json.loads(body)['detail']!r}"
    except (ValueError, KeyError):
        return repr(body[:120])


async def test_a_forged_log_line_in_the_path_stays_inside_its_record(
    collector_process: Callable[..., CollectorProcess],
) -> None:
    process = collector_process()
    await wait_ready(process.base, process)
    # A newline, a carriage return, a Unicode line separator, an RTL override and an ANSI
    # escape: each could make the refusal's log record span lines or read as something else.
    stream = f"a\n{FORGED}\r\n{FORGED}\u2028{FORGED}\u202egnp.exe\x1b[2J"
    path = f"/v1/episodes/x/streams/{quote(stream, safe='')}/chunks/0"
    raw = f"PUT {path} HTTP/1.1\r\nHost: collector\r\nContent-Length: 0\r\n\r\n".encode()
    status, headers, body = await _exchange(process.base, raw)
    assert status == 401
    assert _problem(status, headers, body)["reason"] == "unauthorized"
    assert process.stop() == 0
    log = process.log()
    print(f"log injection: {len(log.splitlines())} log lines, refusal record:")
    refusal = [line for line in log.splitlines() if "refused PUT" in line]
    print("\n".join(refusal))
    assert not [line for line in log.splitlines() if line.startswith(FORGED)]
    assert len(refusal) == 1
    assert f"a\\n{FORGED}\\r\\n{FORGED}\\u2028{FORGED}\\u202egnp.exe\\x1b[2J" in refusal[0]
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]", log)


_MALFORMED = {
    "a 64 KiB header": (
        b"GET /healthz HTTP/1.1\r\nHost: collector\r\nX-Padding: " + b"a" * 65536 + b"\r\n\r\n"
    ),
    "200 headers": (
        b"GET /healthz HTTP/1.1\r\nHost: collector\r\n"
        + b"".join(b"X-Header-%d: v\r\n" % i for i in range(200))
        + b"\r\n"
    ),
    "Content-Length with Transfer-Encoding": (
        b"POST /v1/episodes HTTP/1.1\r\nHost: collector\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "a negative Content-Length": (
        b"POST /v1/episodes HTTP/1.1\r\nHost: collector\r\nContent-Length: -1\r\n\r\n"
    ),
}


async def test_requests_the_http_parser_rejects_are_problems_too(
    collector_process: Callable[..., CollectorProcess], devices: Devices
) -> None:
    process = collector_process()
    await wait_ready(process.base, process)
    answers = {name: await _exchange(process.base, raw) for name, raw in _MALFORMED.items()}
    # Chunk framing the parser rejects along with the head, before any handler runs.
    answers["a broken chunked body"] = await _exchange(
        process.base,
        b"POST /v1/episodes HTTP/1.1\r\nHost: collector\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + devices.token_a.encode() + b"\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\nzz\r\n\r\n",
    )
    for name, (status, headers, body) in answers.items():
        print(f"{name}: {status} {headers.get('content-type')} {_shown(body)}")
    for name, (status, headers, body) in answers.items():
        assert status == 400, (name, status, body)
        assert _problem(status, headers, body)["reason"] == "malformed_request", (name, body)
    # Still serving, and the refusals are counted like any other.
    status, _, metrics = await _exchange(
        process.base, b"GET /metrics HTTP/1.1\r\nHost: collector\r\nConnection: close\r\n\r\n"
    )
    assert status == 200
    assert 'robolake_collector_rejections_total{reason="malformed_request"} 5.0' in (
        metrics.decode()
    )
    assert process.stop() == 0
    log = process.log()
    print("\n".join(line for line in log.splitlines() if "malformed" in line))
    assert "Traceback" not in log  # a client's broken request is no server error
    assert log.count("refused a malformed request") == 5, log


async def test_a_body_that_breaks_while_being_read_is_a_malformed_request(
    collector_process: Callable[..., CollectorProcess],
    devices: Devices,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # aiohttp's pure-Python parser hands a framing error in a body being read to the handler
    # (its C parser leaves the read waiting; body_timeout ends that with a 408).
    monkeypatch.setenv("AIOHTTP_NO_EXTENSIONS", "1")
    process = collector_process()
    await wait_ready(process.base, process)
    status, headers, body = await _exchange(
        process.base,
        b"POST /v1/episodes HTTP/1.1\r\nHost: collector\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + devices.token_a.encode() + b"\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n",
        b"zz\r\n\r\n",
    )
    print(f"body broken mid-read: {status} {headers.get('content-type')} {_shown(body)}")
    assert status == 400, process.log()
    assert _problem(status, headers, body)["reason"] == "malformed_request"
    assert process.stop() == 0
    assert "Traceback" not in process.log()
