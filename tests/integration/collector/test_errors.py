"""Every refusal of the collector, each with its status and RFC 9457 problem type."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pyarrow as pa
import pytest
from aiohttp import ClientResponse, ClientSession
from collector_harness import (
    ARROW,
    Devices,
    LiveCollector,
    auth,
    chunk_headers,
    register,
    start_collector,
)

from robolake.collector.settings import CollectorSettings
from robolake.devices.registry import DeviceRegistry
from robolake.endpoints import Endpoints
from robolake.episode.chunks import encode_chunk
from robolake.episode.synthetic import SyntheticEpisode

PROBLEM = "application/problem+json"
T_NS = pa.field("t_ns", pa.int64(), nullable=False)


async def assert_problem(response: ClientResponse, status: int, reason: str) -> dict[str, Any]:
    text = await response.text()
    assert response.status == status, text
    assert response.content_type == PROBLEM, text
    body: dict[str, Any] = json.loads(text)
    assert body["type"] == f"https://robolake.dev/problems/{reason}", body
    assert body["reason"] == reason
    assert body["status"] == status
    assert body["detail"]
    return body


def chunk_url(base: str, episode_id: str, stream: str, seq: int | str) -> str:
    return f"{base}/v1/episodes/{episode_id}/streams/{stream}/chunks/{seq}"


async def test_authentication_failures_are_401(
    live: LiveCollector, devices: Devices, episode: SyntheticEpisode
) -> None:
    manifest = episode.manifest_bytes()
    url = f"{live.base}/v1/episodes"
    json_type = {"Content-Type": "application/json"}
    async with live.client.post(url, data=manifest, headers=json_type) as r:
        await assert_problem(r, 401, "unauthorized")
    async with live.client.post(url, data=manifest, headers={**json_type, **auth("rlk_x")}) as r:
        await assert_problem(r, 401, "unauthorized")
    ticket = await register(live.client, live.base, devices.token_a, manifest)
    DeviceRegistry(devices.path).revoke("dev-a")  # takes effect at once
    async with live.client.post(
        url, data=manifest, headers={**json_type, **auth(devices.token_a)}
    ) as r:
        await assert_problem(r, 401, "unauthorized")
    stream, seq, data = next(episode.iter_chunks())
    async with live.client.put(
        chunk_url(live.base, episode.manifest.episode_id, stream, seq),
        data=io.BytesIO(data),
        headers=chunk_headers(devices.token_a, ticket, data),
    ) as r:
        await assert_problem(r, 401, "unauthorized")


async def test_other_devices_episodes_and_bad_tickets_are_403(
    live: LiveCollector, devices: Devices, episode: SyntheticEpisode
) -> None:
    manifest = episode.manifest_bytes()
    # dev-b may not register an episode whose manifest names dev-a.
    async with live.client.post(
        f"{live.base}/v1/episodes",
        data=manifest,
        headers={**auth(devices.token_b), "Content-Type": "application/json"},
    ) as r:
        await assert_problem(r, 403, "forbidden")
    ticket = await register(live.client, live.base, devices.token_a, manifest)
    stream, seq, data = next(episode.iter_chunks())
    url = chunk_url(live.base, episode.manifest.episode_id, stream, seq)
    # dev-b presenting dev-a's ticket.
    async with live.client.put(
        url, data=io.BytesIO(data), headers=chunk_headers(devices.token_b, ticket, data)
    ) as r:
        await assert_problem(r, 403, "forbidden")
    # dev-a's ticket on another episode's path.
    other = chunk_url(live.base, "0190f0e6-0000-7000-8000-000000000001", stream, seq)
    async with live.client.put(
        other, data=io.BytesIO(data), headers=chunk_headers(devices.token_a, ticket, data)
    ) as r:
        await assert_problem(r, 403, "forbidden")
    # No ticket, a forged ticket.
    headers = chunk_headers(devices.token_a, ticket, data)
    del headers["Upload-Ticket"]
    async with live.client.put(url, data=io.BytesIO(data), headers=headers) as r:
        await assert_problem(r, 403, "ticket_invalid")
    forged = ticket[:-4] + ("AAAA" if not ticket.endswith("AAAA") else "BBBB")
    async with live.client.put(
        url, data=io.BytesIO(data), headers=chunk_headers(devices.token_a, forged, data)
    ) as r:
        await assert_problem(r, 403, "ticket_invalid")


async def test_unknown_routes_methods_conflicts_and_media_types(
    live: LiveCollector, devices: Devices, episode: SyntheticEpisode
) -> None:
    async with live.client.get(f"{live.base}/nope") as r:
        await assert_problem(r, 404, "not_found")
    async with live.client.get(f"{live.base}/v1/episodes") as r:
        await assert_problem(r, 405, "method_not_allowed")
    manifest = episode.manifest_bytes()
    async with live.client.post(
        f"{live.base}/v1/episodes",
        data=manifest,
        headers={**auth(devices.token_a), "Content-Type": "text/plain"},
    ) as r:
        await assert_problem(r, 415, "unsupported_media_type")
    ticket = await register(live.client, live.base, devices.token_a, manifest)
    changed = json.loads(manifest)
    changed["task"] = "a different task under the same episode id"
    async with live.client.post(
        f"{live.base}/v1/episodes",
        data=json.dumps(changed).encode(),
        headers={**auth(devices.token_a), "Content-Type": "application/json"},
    ) as r:
        await assert_problem(r, 409, "episode_conflict")
    stream, seq, data = next(episode.iter_chunks())
    headers = {
        **chunk_headers(devices.token_a, ticket, data),
        "Content-Type": "application/octet-stream",
    }
    async with live.client.put(
        chunk_url(live.base, episode.manifest.episode_id, stream, seq),
        data=io.BytesIO(data),
        headers=headers,
    ) as r:
        await assert_problem(r, 415, "unsupported_media_type")
    async with live.client.put(
        chunk_url(live.base, episode.manifest.episode_id, stream, "minus-one"),
        data=io.BytesIO(data),
        headers=chunk_headers(devices.token_a, ticket, data),
    ) as r:
        await assert_problem(r, 400, "bad_request")


async def test_validation_failures_are_422_with_the_contract_reason(
    live: LiveCollector, devices: Devices, episode: SyntheticEpisode
) -> None:
    broken = json.loads(episode.manifest_bytes())
    broken["scene"] = "moon"
    async with live.client.post(
        f"{live.base}/v1/episodes", data=json.dumps(broken).encode(),
        headers={**auth(devices.token_a), "Content-Type": "application/json"},
    ) as r:  # fmt: skip
        await assert_problem(r, 422, "manifest_invalid")
    ticket = await register(live.client, live.base, devices.token_a, episode.manifest_bytes())
    episode_id = episode.manifest.episode_id
    chunks = episode.chunks()
    imu = chunks["imu"][0]

    async def put(stream: str, data: bytes) -> ClientResponse:
        return await live.client.put(
            chunk_url(live.base, episode_id, stream, 0),
            data=io.BytesIO(data),
            headers=chunk_headers(devices.token_a, ticket, data),
        )

    async with await put("joint_state", imu) as r:  # IMU rows under the joint_state stream
        await assert_problem(r, 422, "schema_mismatch")
    async with await put("no_such_stream", imu) as r:
        await assert_problem(r, 422, "unknown_stream")
    async with await put("imu", b"\x00not arrow at all" * 10) as r:
        await assert_problem(r, 422, "malformed_arrow")
    table = episode.streams["imu"].slice(0, 10)
    reversed_t = table.set_column(
        0, T_NS, pa.array(list(reversed(table.column("t_ns").to_pylist())), pa.int64())
    )
    decl = episode.manifest.stream("imu")
    async with await put("imu", encode_chunk(reversed_t, decl.stream_type)) as r:
        await assert_problem(r, 422, "t_ns_decreasing")
    late = table.set_column(
        0,
        T_NS,
        pa.array([episode.manifest.ended_at_ns + 10**9 + i for i in range(10)], pa.int64()),
    )
    async with await put("imu", encode_chunk(late, decl.stream_type)) as r:
        await assert_problem(r, 422, "t_ns_out_of_range")
    # Damaged in transit: 400, retriable.
    headers = chunk_headers(devices.token_a, ticket, imu)
    async with live.client.put(
        chunk_url(live.base, episode_id, "imu", 0),
        data=io.BytesIO(imu[:100] + bytes([imu[100] ^ 0xFF]) + imu[101:]),
        headers=headers,
    ) as r:
        body = await assert_problem(r, 400, "checksum_mismatch")
        assert body["retriable"] is True
    del headers["Robolake-Checksum"]
    async with live.client.put(
        chunk_url(live.base, episode_id, "imu", 0), data=io.BytesIO(imu), headers=headers
    ) as r:
        await assert_problem(r, 400, "bad_request")


async def test_oversized_bodies_are_413_before_being_read(
    live: LiveCollector, devices: Devices, episode: SyntheticEpisode
) -> None:
    ticket = await register(live.client, live.base, devices.token_a, episode.manifest_bytes())
    limit = live.collector.settings.max_chunk_bytes
    url = chunk_url(live.base, episode.manifest.episode_id, "imu", 0)
    big = b"\x00" * (limit + 1)
    # Declared by Content-Length.
    async with live.client.put(
        url, data=io.BytesIO(big), headers=chunk_headers(devices.token_a, ticket, big)
    ) as r:
        await assert_problem(r, 413, "chunk_too_large")

    # Chunked transfer (no Content-Length): refused by the running count.
    async def body() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b"\x00" * (limit // 4)

    async with live.client.put(
        url, data=body(), headers=chunk_headers(devices.token_a, ticket, big)
    ) as r:
        await assert_problem(r, 413, "chunk_too_large")

    # Expect: 100-continue: the answer comes before the device sends a single body byte.
    host, port = live.base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    headers = chunk_headers(devices.token_a, ticket, big)
    head = (
        f"PUT {url.removeprefix(live.base)} HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Length: {10 * limit}\r\nExpect: 100-continue\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        + "\r\n"
    )
    writer.write(head.encode())
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), timeout=10)
    assert status_line.startswith(b"HTTP/1.1 413"), status_line
    writer.close()
    await writer.wait_closed()


async def _collector_with(
    settings: CollectorSettings, endpoints: Endpoints, topic: str
) -> tuple[Any, Any, str]:
    collector, server = await start_collector(settings, endpoints, topic)
    return collector, server, str(server.make_url("")).rstrip("/")


@pytest.mark.parametrize(
    ("overrides", "status", "reason"),
    [
        ({"device_rate_bytes": 1000.0, "device_burst_bytes": 1000.0}, 429, "quota_exceeded"),
        ({"inflight_bytes": 1000}, 503, "overloaded"),
    ],
)
async def test_quota_and_capacity_refusals_carry_retry_after(
    settings: CollectorSettings,
    stack_endpoints: Endpoints,
    kafka_topic: str,
    devices: Devices,
    episode: SyntheticEpisode,
    overrides: dict[str, float],
    status: int,
    reason: str,
) -> None:
    collector, server, base = await _collector_with(
        replace(settings, **overrides), stack_endpoints, kafka_topic
    )
    try:
        async with ClientSession() as client:
            manifest = episode.manifest_bytes()
            async with client.post(
                f"{base}/v1/episodes", data=manifest,
                headers={**auth(devices.token_a), "Content-Type": "application/json"},
            ) as r:  # fmt: skip
                if r.status != 201:
                    await assert_problem(r, status, reason)
                    assert int(r.headers["Retry-After"]) >= 1
                    return
                ticket = (await r.json())["ticket"]
            stream, seq, data = next(episode.iter_chunks())
            async with client.put(
                chunk_url(base, episode.manifest.episode_id, stream, seq),
                data=io.BytesIO(data), headers=chunk_headers(devices.token_a, ticket, data),
            ) as r:  # fmt: skip
                body = await assert_problem(r, status, reason)
                assert int(r.headers["Retry-After"]) >= 1
                assert body["retry_after"] > 0
        assert collector.inflight.used == 0
    finally:
        await server.close()
        await collector.sink.stop()
    assert ARROW
