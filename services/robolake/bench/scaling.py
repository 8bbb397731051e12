"""Collector processes per core: ``robolake collector --workers N``, or several such commands
sharing one port with ``--reuse-port``.

``make bench`` runs one ``--workers 2`` command, the deployment docs/operations.md ("Collector
workers") and docs/capacity.md recommend: one master, N worker processes on one port with
``SO_REUSEPORT``. Several commands with ``--reuse-port`` (``processes`` > 1) remain for sharing a
port with other collector commands on purpose. Either way the kernel spreads the load
generator's connections over the processes; the figure is the acknowledged payload MB/s summed
over all of them, with each command's peak RSS and CPU seconds summed over its process tree
(master and workers; to see how evenly the connections landed when ``processes`` > 1). The load
is the closed loop of :func:`robolake.bench.collector.collector_load` (pre-encoded chunks, one
loop per device), run in this process, so on a small machine the load generator competes with
the collectors for cores: compare figures taken on the same machine only.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from robolake.bench.collector import READY_TIMEOUT_S, closed_loop, listening
from robolake.bench.harness import CollectorFigures, Service, bench_devices, bench_env
from robolake.bench.peers import TreeMemory, tree_cpu_seconds
from robolake.endpoints import Endpoints
from robolake.episode.topics import MAX_RECORD_BYTES
from robolake.launch import LaunchError, http_ok, stop_all
from robolake.provision import TopicSpec, ensure_topics
from robolake.stack.process import free_port

_STOP_TIMEOUT_S = 60.0


@dataclass
class ScalingFigures(CollectorFigures):
    """:class:`CollectorFigures` summed over ``processes`` collector commands of ``workers``
    worker processes each, on one port.

    ``mb_per_s``, ``chunks``, the latencies and ``errors`` are over all processes together (as
    the devices saw them); ``peak_rss_mib`` is the largest command's peak, summed over its
    process tree (master and workers); the per-command lists are in start order.
    """

    processes: int = 1
    #: ``--workers`` of each command (1: a single process, no master).
    workers: int = 1
    peak_rss_mib_per_process: list[float] = field(default_factory=list)
    #: Sum of the per-command peaks: an upper bound of the collectors' memory at any moment.
    total_peak_rss_mib: float = 0.0
    #: User + system CPU seconds of each command's process tree over its life until the load
    #: ended (start, load; not the drain).
    cpu_seconds_per_process: list[float] = field(default_factory=list)


async def _stop_all(services: list[Service]) -> None:
    """Stop every collector at once so they drain in parallel (also on Ctrl-C: the thread
    finishes the stop even when this task is cancelled). A command's SIGTERM goes to its
    master, which forwards it to its workers."""
    try:
        await asyncio.to_thread(stop_all, [s.process for s in services], grace=_STOP_TIMEOUT_S)
    finally:
        for service in services:
            await service.stop()  # already stopped: only ends its sampler, if any


async def collector_processes(
    endpoints: Endpoints,
    workdir: Path,
    *,
    processes: int,
    devices: int,
    seconds: float,
    chunk_bytes: int,
    event_loop: str = "asyncio",
    workers: int = 1,
) -> ScalingFigures:
    """``processes`` ``robolake collector --workers {workers}`` commands on one port (with
    ``--reuse-port`` when there are several), ``devices`` closed-loop uploaders for ``seconds``
    (the loop of ``collector_load``), started once every worker of every command listens;
    every command is stopped on the way out, also on error."""
    if processes < 1 or devices < 1 or workers < 1:
        raise ValueError("processes, devices and workers must be >= 1")
    topic = f"bench-scaling-{uuid.uuid4().hex[:8]}"
    await ensure_topics(
        endpoints.kafka_bootstrap,
        [TopicSpec(topic, 8, {"max.message.bytes": str(MAX_RECORD_BYTES)})],
    )
    devices_file, tokens = bench_devices(workdir / "scaling-devices.json", devices)
    env = bench_env(endpoints, topic, devices_file)
    port = free_port()
    argv = ["collector", "--port", str(port), "--device-rate", "0", "--workers", str(workers)]
    argv += ["--event-loop", event_loop, *(["--reuse-port"] if processes > 1 else [])]
    base = f"http://127.0.0.1:{port}"
    services: list[Service] = []
    memories: list[TreeMemory] = []
    stop = asyncio.Event()
    samplers: list[asyncio.Task[None]] = []
    cpu: list[float] = []
    peaks: list[float] = []
    try:
        for index in range(processes):
            log_path = workdir / f"scaling-{processes}x{workers}w-{event_loop}-{index}.log"
            services.append(Service.start(argv, env, log_path))
        deadline = time.monotonic() + READY_TIMEOUT_S
        for service in services:
            await listening(service.process, workers, within=max(0.0, deadline - time.monotonic()))
        # Kafka connected, HTTP answering
        await services[0].process.ready(http_ok(f"{base}/readyz"))
        memories = [TreeMemory(s.process.pid) for s in services]
        samplers = [asyncio.create_task(m.sample(stop)) for m in memories]
        tally, elapsed = await closed_loop(
            base, list(tokens.values()), seconds=seconds, chunk_bytes=chunk_bytes
        )
        dead = [s.process.pid for s in services if not s.process.running]
        if dead:
            raise LaunchError(f"collector processes {dead} exited during the run")
        cpu = [tree_cpu_seconds(s.process.pid) for s in services]
        peaks = [m.peak() for m in memories]
    finally:
        stop.set()
        for sampler in samplers:
            await sampler
        await _stop_all(services)
    return ScalingFigures(
        **asdict(tally.figures(elapsed, max(peaks))),
        processes=processes,
        workers=workers,
        peak_rss_mib_per_process=peaks,
        total_peak_rss_mib=sum(peaks),
        cpu_seconds_per_process=cpu,
    )
