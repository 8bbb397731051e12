"""The collector alone: acknowledged payload MB/s and ack latency under a closed loop of
concurrent device uploads of pre-encoded chunks.

The load generator encodes every device's chunks before the clock starts (distinct camera
frames, :mod:`robolake.episode.synthetic`), so during the run it costs little CPU and the figure
is the collector's, not the generator's; :mod:`robolake.bench.scaling` reuses the same loop
against several processes, :mod:`robolake.bench.peers` against Benthos.

A collector started with ``--workers N`` (N > 1) is a master and N worker processes
(docs/operations.md, "Collector workers"), so its memory is read over the process tree, never
from the master's PID alone (the master holds ~25 MiB and serves nothing).
"""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from robolake.bench.harness import (
    CollectorFigures,
    Service,
    UploadTally,
    bench_devices,
    bench_env,
    chunk_headers,
)
from robolake.endpoints import Endpoints
from robolake.episode.checksums import checksum
from robolake.episode.synthetic import SyntheticEpisode, SyntheticSpec, generate_episode
from robolake.episode.topics import MAX_RECORD_BYTES
from robolake.launch import ServiceProcess
from robolake.provision import TopicSpec, ensure_topics
from robolake.stack.process import free_port

#: What ``robolake.collector.service.serve`` logs once its socket is listening, once per worker
#: (workers share the master's log). With a shared port, ``/readyz`` answers for whichever
#: process took the connection, so the log is what says every process is up.
LISTENING = "collector listening on"
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Device:
    """A bench device's synthetic episode and its camera chunks, encoded before any clock runs:
    ``(stream, bytes, checksum)`` in upload order."""

    index: int
    token: str
    episode: SyntheticEpisode
    chunks: list[tuple[str, bytes, str]]


def prepare_device(index: int, token: str, chunk_bytes: int) -> Device:
    """Device ``bench-dev-{index:03d}``: a 4 s humanoid episode (3 cameras, distinct frames)."""
    episode = generate_episode(
        SyntheticSpec(
            seed=index,
            frame_seed=1,
            duration_s=4.0,
            device_id=f"bench-dev-{index:03d}",
            capture_point_id="bench-cp",
            pose_rate_hz=None,
        )
    )
    chunks = [c for c in episode.iter_chunks(chunk_bytes) if c[0].startswith("cam_")]
    return Device(index, token, episode, [(s, d, checksum(d)) for s, _, d in chunks])


async def device_uploads(
    session: aiohttp.ClientSession,
    base: str,
    device: Device,
    *,
    deadline: float,
    tally: UploadTally,
    register: bool = True,
    accepted: tuple[int, ...] = (201,),
    budget: int | None = None,
) -> None:
    """One device's closed loop against the collector at ``base``: register its episode, then
    PUT its pre-encoded camera chunks back to back (cycling through them) until ``deadline``
    (``time.monotonic()``) or until the devices together had ``budget`` bytes acknowledged,
    counting into ``tally``.

    Without ``register`` the PUTs go to the same URLs with no ticket (a peer such as Benthos's
    ``http_server`` has no episodes to register); ``accepted`` are its success statuses.
    """
    episode, token, prepared = device.episode, device.token, device.chunks
    auth = {"Authorization": f"Bearer {token}"}
    ticket = ""
    if register:
        async with session.post(
            f"{base}/v1/episodes",
            data=episode.manifest_bytes(),
            headers={**auth, "Content-Type": "application/json"},
        ) as r:
            ticket = (await r.json())["ticket"]
    episode_url = f"{base}/v1/episodes/{episode.manifest.episode_id}"
    seq = 0
    while time.monotonic() < deadline and (budget is None or tally.sent < budget):
        stream, data, digest = prepared[seq % len(prepared)]
        url = f"{episode_url}/streams/{stream}/chunks/{seq}"
        began = time.perf_counter()
        async with session.put(
            url,
            data=io.BytesIO(data),
            expect100=True,
            headers=chunk_headers(token, ticket, digest),
        ) as r:
            await r.read()
            if r.status in accepted:
                tally.latencies.append(time.perf_counter() - began)
                tally.sent += len(data)
            else:
                tally.errors += 1
                await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
        seq += 1


async def listening(process: ServiceProcess, workers: int, *, within: float) -> None:
    """Until ``process`` (a ``robolake collector --workers N`` command) has logged that each of
    its ``workers`` processes listens: the load must not start while only some of them take
    connections."""
    await process.ready(lambda: process.log().count(LISTENING) >= workers, within=within)


async def collector_load(
    endpoints: Endpoints,
    workdir: Path,
    *,
    devices: int,
    seconds: float,
    chunk_bytes: int,
    event_loop: str = "asyncio",
    workers: int = 1,
) -> CollectorFigures:
    """Closed-loop uploads by ``devices`` concurrent devices for ``seconds`` against one
    ``robolake collector --workers {workers}``; the peak RSS is summed over its processes (the
    master and its workers when ``workers`` > 1)."""
    # Not at the top: peers imports this module (closed_loop).
    from robolake.bench.peers import TreeMemory

    if workers < 1:
        raise ValueError("workers must be >= 1")
    topic = f"bench-collector-{uuid.uuid4().hex[:8]}"
    await ensure_topics(
        endpoints.kafka_bootstrap,
        [TopicSpec(topic, 8, {"max.message.bytes": str(MAX_RECORD_BYTES)})],
    )
    devices_file, tokens = bench_devices(workdir / "collector-devices.json", devices)
    port = free_port()
    argv = ["collector", "--port", str(port), "--device-rate", "0", "--event-loop", event_loop]
    service = Service.start(
        [*argv, "--workers", str(workers)],
        bench_env(endpoints, topic, devices_file),
        workdir / f"collector-{event_loop}-{workers}w.log",
    )
    base = f"http://127.0.0.1:{port}"
    memory = TreeMemory(service.process.pid)
    stop = asyncio.Event()
    sampler: asyncio.Task[None] | None = None
    try:
        await listening(service.process, workers, within=READY_TIMEOUT_S)
        await service.ready(f"{base}/readyz")  # Kafka connected, HTTP answering
        sampler = asyncio.create_task(memory.sample(stop))
        tally, elapsed = await closed_loop(
            base, list(tokens.values()), seconds=seconds, chunk_bytes=chunk_bytes
        )
        service.process.check()
        peak = memory.peak()  # while the processes are alive (their high-water mark)
    finally:
        stop.set()
        if sampler is not None:
            await sampler
        await service.stop()
    return tally.figures(elapsed, peak)


async def closed_loop(
    base: str,
    tokens: list[str],
    *,
    seconds: float,
    chunk_bytes: int,
    register: bool = True,
    accepted: tuple[int, ...] = (201,),
    budget: int | None = None,
) -> tuple[UploadTally, float]:
    """One :func:`device_uploads` loop per token against ``base`` for ``seconds`` (or until
    ``budget`` bytes are acknowledged); the tally and the seconds from start to the last
    answer."""
    # Encode every device's chunks first: generating data is not what the figure measures.
    devices = [prepare_device(i, token, chunk_bytes) for i, token in enumerate(tokens)]
    tally = UploadTally()
    connector = aiohttp.TCPConnector(limit=len(tokens))
    async with aiohttp.ClientSession(connector=connector) as session:
        began = time.monotonic()
        deadline = began + seconds
        await asyncio.gather(
            *(
                device_uploads(
                    session,
                    base,
                    device,
                    deadline=deadline,
                    tally=tally,
                    register=register,
                    accepted=accepted,
                    budget=budget,
                )
                for device in devices
            )
        )
        return tally, time.monotonic() - began
