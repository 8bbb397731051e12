"""End to end: paced capture points uploading through a collector and a writer at a steady
rate, ack latency p99 and both services' peak RSS (and once without the writer on the host)."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from robolake.bench.harness import (
    Service,
    UploadTally,
    bench_devices,
    bench_env,
    bench_episode,
    chunk_headers,
    fresh_dataset,
    quantile,
)
from robolake.endpoints import Endpoints
from robolake.episode.checksums import checksum
from robolake.episode.ids import new_episode_id
from robolake.episode.topics import MAX_RECORD_BYTES
from robolake.provision import TopicSpec, ensure_bucket, ensure_topics
from robolake.stack.process import free_port


@dataclass
class EndToEndFigures:
    capture_points: int
    target_mb_per_s: float
    mb_per_s: float
    chunks: int
    ack_p50_ms: float
    ack_p99_ms: float
    #: How late the load generator started uploads against their schedule (p99, ms): large
    #: values mean the generator, not robolake, limited the offered load.
    start_lag_p99_ms: float
    collector_rss_mib: float
    writer_rss_mib: float
    writer_buffer_cap_mib: float
    errors: dict[str, int]


@dataclass
class _Template:
    """One pre-encoded humanoid episode every capture point replays under its own identity."""

    document: dict[str, Any]
    chunks: list[tuple[str, int, bytes, str]]  # stream, seq, bytes, checksum header

    @classmethod
    def build(cls, chunk_bytes: int) -> _Template:
        episode = bench_episode(7)
        chunks = [(s, q, d, checksum(d)) for s, q, d in episode.iter_chunks(chunk_bytes)]
        # Streams interleaved (by seq), roughly as a recording device uploads them.
        chunks.sort(key=lambda c: (c[1], c[0]))
        return cls(json.loads(episode.manifest_bytes()), chunks)

    def manifest(self, device_id: str, capture_point_id: str) -> tuple[str, bytes]:
        document = {
            **self.document,
            "episode_id": new_episode_id(device_id),
            "device_id": device_id,
            "capture_point_id": capture_point_id,
        }
        return document["episode_id"], json.dumps(document).encode()


async def _paced_capture_point(
    session: aiohttp.ClientSession,
    base: str,
    token: str,
    device_id: str,
    template: _Template,
    *,
    bytes_per_s: float,
    ready: asyncio.Event,
    arrived: list[str],
    window: list[float],
    tally: UploadTally,
    lags: list[float],
    errors: dict[str, int],
) -> None:
    """One capture point's open loop: episodes of the template, each chunk PUT when the
    recording would have produced it at ``bytes_per_s``, whether or not the previous chunk is
    still uploading (no coordinated omission). Ends at ``deadline``."""
    auth = {"Authorization": f"Bearer {token}"}
    rng = random.Random(device_id)
    position = rng.randrange(len(template.chunks))  # capture points are not in lock step
    phase = rng.uniform(0, len(template.chunks[position][2]) / bytes_per_s)
    uploads: list[asyncio.Task[None]] = []

    async def put(url: str, data: bytes, digest: str, ticket: str, scheduled: float) -> None:
        started = time.monotonic()
        lags.append(started - scheduled)
        try:
            async with session.put(
                url,
                data=data,
                headers=chunk_headers(token, ticket, digest),
            ) as r:
                await r.read()
                if r.status == 201:
                    tally.latencies.append(time.monotonic() - started)
                    tally.sent += len(data)
                else:
                    errors[str(r.status)] = errors.get(str(r.status), 0) + 1
        except aiohttp.ClientError as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1

    async def register() -> tuple[str, str] | None:
        episode_id, manifest = template.manifest(device_id, "bench-cp")
        async with session.post(
            f"{base}/v1/episodes",
            data=manifest,
            headers={**auth, "Content-Type": "application/json"},
        ) as r:
            if r.status not in (200, 201):
                errors[f"register {r.status}"] = errors.get(f"register {r.status}", 0) + 1
                return None
            return episode_id, str((await r.json())["ticket"])

    # The first episode is registered before the clock starts (a thousand registrations in one
    # instant is a start-up storm, not the steady rate being measured).
    registered = await register()
    arrived.append(device_id)
    await ready.wait()
    began, deadline = window
    due = began + phase
    while due < deadline:
        if registered is None:
            registered = await register()
            if registered is None:
                return
        episode_id, ticket = registered
        registered = None
        url = f"{base}/v1/episodes/{episode_id}/streams"
        for stream, seq, data, digest in template.chunks[position:]:
            if due >= deadline:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            uploads.append(
                asyncio.create_task(put(f"{url}/{stream}/chunks/{seq}", data, digest, ticket, due))
            )
            due += len(data) / bytes_per_s
        position = 0
    await asyncio.gather(*uploads)


async def end_to_end(
    endpoints: Endpoints,
    workdir: Path,
    *,
    capture_points: int,
    rate_mb_s: float,
    seconds: float,
    chunk_bytes: int = 1024 * 1024,
    writer_buffer_mib: int = 512,
    writer_nice: int = 0,
    with_writer: bool = True,
) -> EndToEndFigures:
    """``capture_points`` devices, each on its own connection, uploading pre-encoded humanoid
    episodes at their share of ``rate_mb_s`` through a collector and a writer on the local stack.

    The devices replay one pre-encoded episode under their own ids (as
    :func:`collector_load` does), so the load generator costs little CPU: on a two-core machine
    the simulator's episode generation would otherwise be the bottleneck, not robolake.
    """
    topic = f"bench-e2e-{uuid.uuid4().hex[:8]}"
    await ensure_topics(
        endpoints.kafka_bootstrap,
        [TopicSpec(topic, 8, {"max.message.bytes": str(MAX_RECORD_BYTES)})],
    )
    bucket_endpoints = fresh_dataset(endpoints, "bench")
    ensure_bucket(bucket_endpoints)
    devices_file, tokens = bench_devices(workdir / "e2e-devices.json", capture_points)
    env = bench_env(bucket_endpoints, topic, devices_file)
    port, metrics = free_port(), free_port()
    collector = Service.start(
        # One worker: the RSS target is per process, and Service samples the process it started.
        ["collector", "--port", str(port), "--device-rate", "0", "--workers", "1"],
        env,
        workdir / "e2e-collector.log",
    )
    # Without the writer (``with_writer=False``) the chunks stay in Kafka: the run then shows
    # what the collector and broker alone answer at the same rate on the same cores.
    writer = (
        Service.start(
            [
                "writer",
                "--metrics-port",
                str(metrics),
                "--group",
                f"bench-{topic}",
                "--max-buffer-bytes",
                f"{writer_buffer_mib}MiB",
            ],
            env,
            workdir / "e2e-writer.log",
            nice=writer_nice,
        )
        if with_writer
        else None
    )
    template = _Template.build(chunk_bytes)
    tally = UploadTally()
    lags: list[float] = []
    errors: dict[str, int] = {}
    base = f"http://127.0.0.1:{port}"
    try:
        await collector.ready(f"{base}/readyz")
        collector.watch()
        if writer is not None:
            writer.watch()
        per_point = rate_mb_s * 1e6 / capture_points
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            ready = asyncio.Event()
            arrived: list[str] = []
            window: list[float] = []
            points = [
                asyncio.create_task(
                    _paced_capture_point(
                        session,
                        base,
                        tokens[device],
                        device,
                        template,
                        bytes_per_s=per_point,
                        ready=ready,
                        arrived=arrived,
                        window=window,
                        tally=tally,
                        lags=lags,
                        errors=errors,
                    )
                )
                for device in tokens
            ]
            while len(arrived) + sum(p.done() for p in points) < len(tokens):  # noqa: ASYNC110
                await asyncio.sleep(0.2)  # a count over a thousand tasks, not one event
            began = time.monotonic()
            window.extend([began, began + seconds])
            ready.set()
            await asyncio.gather(*points)
            elapsed = time.monotonic() - began
    finally:
        await collector.stop()
        if writer is not None:
            await writer.stop()
    latencies = sorted(tally.latencies)
    lags.sort()
    return EndToEndFigures(
        capture_points=capture_points,
        target_mb_per_s=rate_mb_s,
        mb_per_s=tally.sent / 1e6 / elapsed,  # elapsed: the window plus the last acks
        chunks=len(latencies),
        ack_p50_ms=quantile(latencies, 0.5) * 1000,
        ack_p99_ms=quantile(latencies, 0.99) * 1000,
        start_lag_p99_ms=quantile(lags, 0.99) * 1000,
        collector_rss_mib=collector.peak_rss_mib,
        writer_rss_mib=writer.peak_rss_mib if writer is not None else 0.0,
        writer_buffer_cap_mib=writer_buffer_mib,
        errors=errors,
    )
