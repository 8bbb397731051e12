"""Hostile clients and secrets: slow bodies, idle connection floods, TLS, nothing secret leaks.

Each test prints its accounting.
"""

from __future__ import annotations

import asyncio
import io
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
import trustme
from collector_harness import (
    TICKET_KEY,
    CollectorProcess,
    Devices,
    auth,
    chunk_headers,
    register,
    start_collector,
    wait_ready,
)

from robolake.collector.settings import CollectorSettings
from robolake.endpoints import Endpoints
from robolake.episode.synthetic import SyntheticEpisode
from robolake.stack.process import rss_mib


async def test_slow_loris_body_gets_408_and_frees_its_reservation(
    settings: CollectorSettings,
    stack_endpoints: Endpoints,
    kafka_topic: str,
    devices: Devices,
    episode: SyntheticEpisode,
) -> None:
    collector, server = await start_collector(
        replace(settings, body_timeout=1.0), stack_endpoints, kafka_topic
    )
    try:
        base = str(server.make_url("")).rstrip("/")
        async with aiohttp.ClientSession() as client:
            ticket = await register(client, base, devices.token_a, episode.manifest_bytes())
        stream, seq, data = next(episode.iter_chunks())
        headers = chunk_headers(devices.token_a, ticket, data)
        path = f"/v1/episodes/{episode.manifest.episode_id}/streams/{stream}/chunks/{seq}"
        reader, writer = await asyncio.open_connection(server.host, server.port)
        head = f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        writer.write((head + "\r\n").encode() + data[:10])  # then trickle nothing more
        await writer.drain()
        began = time.monotonic()
        status = await asyncio.wait_for(reader.readline(), timeout=30)
        waited = time.monotonic() - began
        writer.close()
        print(
            f"slow loris: answered {status.decode().strip()!r} after {waited:.1f} s, "
            f"in-flight bytes after = {collector.inflight.used}"
        )
        assert status.startswith(b"HTTP/1.1 408"), status
        assert collector.inflight.used == 0
    finally:
        await server.close()
        await collector.sink.stop()


async def test_thousands_of_idle_connections_do_not_stop_uploads(
    collector_process: Callable[..., CollectorProcess],
    devices: Devices,
    episode: SyntheticEpisode,
) -> None:
    process = collector_process("--workers", "1")  # one process: its RSS is the collector's
    await wait_ready(process.base, process)
    host, port = process.base.removeprefix("http://").split(":")
    baseline = rss_mib(process.proc.pid)
    idle = []
    for _ in range(2000):
        idle.append(await asyncio.open_connection(host, int(port)))
    await asyncio.sleep(1.0)
    with_idle = rss_mib(process.proc.pid)
    async with aiohttp.ClientSession() as client:
        ticket = await register(client, process.base, devices.token_a, episode.manifest_bytes())
        stream, seq, data = next(episode.iter_chunks())
        async with client.put(
            f"{process.base}/v1/episodes/{episode.manifest.episode_id}/streams/{stream}/chunks/{seq}",
            data=io.BytesIO(data),
            headers=chunk_headers(devices.token_a, ticket, data),
        ) as response:
            status = response.status
    for _, writer in idle:
        writer.close()
    print(
        f"idle flood: 2000 idle connections, upload status {status}, RSS {baseline:.0f} -> "
        f"{with_idle:.0f} MiB"
    )
    assert status == 201
    assert with_idle - baseline < 100  # a few KiB per idle connection, not a buffer each
    assert process.stop() == 0


async def test_tls_served_directly_by_the_collector(
    collector_process: Callable[..., CollectorProcess],
    devices: Devices,
    episode: SyntheticEpisode,
    tmp_path: Path,
) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    process = collector_process("--tls-cert", str(cert_path), "--tls-key", str(key_path))
    base = process.base.replace("http://", "https://")
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    await wait_ready(base, process, ssl_context=client_ctx)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ctx)) as client:
        ticket = await register(client, base, devices.token_a, episode.manifest_bytes())
        stream, seq, data = next(episode.iter_chunks())
        async with client.put(
            f"{base}/v1/episodes/{episode.manifest.episode_id}/streams/{stream}/chunks/{seq}",
            data=io.BytesIO(data),
            headers=chunk_headers(devices.token_a, ticket, data),
        ) as response:
            assert response.status == 201
    async with aiohttp.ClientSession() as plain:
        with pytest.raises(aiohttp.ClientError):
            async with plain.get(f"{process.base}/healthz") as response:
                await response.read()  # plain HTTP to the TLS port must not work
    assert "listening on https://" in process.log()
    assert process.stop() == 0


async def test_tokens_tickets_and_secrets_never_reach_logs_or_metrics(
    collector_process: Callable[..., CollectorProcess],
    devices: Devices,
    episode: SyntheticEpisode,
    stack_endpoints: Endpoints,
) -> None:
    process = collector_process()
    await wait_ready(process.base, process)
    async with aiohttp.ClientSession() as client:
        ticket = await register(client, process.base, devices.token_a, episode.manifest_bytes())
        episode_url = f"{process.base}/v1/episodes/{episode.manifest.episode_id}"
        for stream, seq, data in list(episode.iter_chunks())[:3]:
            url = f"{episode_url}/streams/{stream}/chunks/{seq}"
            async with client.put(
                url, data=io.BytesIO(data), headers=chunk_headers(devices.token_a, ticket, data)
            ) as r:
                assert r.status == 201
            # Failures are logged: make sure their logging leaks nothing either.
            async with client.put(
                url, data=io.BytesIO(data), headers=chunk_headers(devices.token_b, ticket, data)
            ) as r:
                assert r.status == 403
            async with client.put(
                url,
                data=io.BytesIO(data),
                headers=chunk_headers(devices.token_a + "x", ticket, data),
            ) as r:
                assert r.status == 401
        async with client.get(f"{process.base}/metrics") as r:
            metrics = await r.text()
        async with client.post(
            f"{process.base}/v1/episodes",
            data=b"{}",
            headers={**auth(devices.token_a), "Content-Type": "application/json"},
        ) as r:
            assert r.status == 422
    assert process.stop() == 0
    log = process.log()
    secrets = {
        "device token a": devices.token_a,
        "device token a secret": devices.token_a.split("_", 2)[2],
        "device token b": devices.token_b,
        "ticket": ticket,
        "ticket key": TICKET_KEY,
        "S3 secret key": stack_endpoints.s3_secret_key,
    }
    leaks = [name for name, value in secrets.items() if value in log or value in metrics]
    episode_labels = re.findall(episode.manifest.episode_id, metrics)
    print(
        f"secrets: checked {len(secrets)} secrets in {len(log)} log bytes and "
        f"{len(metrics)} metrics bytes; leaks={leaks}"
    )
    assert not leaks
    assert not episode_labels  # episode ids are never metric labels
