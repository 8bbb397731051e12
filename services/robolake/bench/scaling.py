"""Collector processes per core: N collectors sharing one port with ``--reuse-port``.

The kernel (``SO_REUSEPORT``) spreads the load generator's connections over the processes; the
figure is the acknowledged payload MB/s summed over all of them, with each process's peak RSS
and CPU seconds (to see how evenly the connections landed). The load is the closed loop of
:func:`robolake.bench.collector.collector_load` (pre-encoded chunks, one loop per device), run
in this process, so on a small machine the load generator competes with the collectors for
cores: compare figures taken on the same machine only.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from robolake.bench.collector import closed_loop
from robolake.bench.harness import CollectorFigures, Service, bench_devices, bench_env
from robolake.endpoints import Endpoints
from robolake.episode.topics import MAX_RECORD_BYTES
from robolake.launch import LaunchError, http_ok, stop_all
from robolake.provision import TopicSpec, ensure_topics
from robolake.stack.process import cpu_seconds, free_port

#: What ``robolake.collector.service.serve`` logs once its socket is listening. With a shared
#: port, ``/readyz`` answers for whichever process took the connection, so each process's own
#: log is what says it is up.
_LISTENING = "collector listening on"
_READY_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 60.0


@dataclass
class ScalingFigures(CollectorFigures):
    """:class:`CollectorFigures` summed over ``processes`` collectors on one port.

    ``mb_per_s``, ``chunks``, the latencies and ``errors`` are over all processes together (as
    the devices saw them); ``peak_rss_mib`` is the largest single process's peak (comparable to
    the one-process figure); the per-process lists are in start order.
    """

    processes: int = 1
    peak_rss_mib_per_process: list[float] = field(default_factory=list)
    #: Sum of the per-process peaks: an upper bound of the collectors' memory at any moment.
    total_peak_rss_mib: float = 0.0
    #: User + system CPU seconds of each process over its whole life (start, load, drain).
    cpu_seconds_per_process: list[float] = field(default_factory=list)


async def _stop_all(services: list[Service]) -> None:
    """Stop every collector at once so they drain in parallel (also on Ctrl-C: the thread
    finishes the stop even when this task is cancelled), then end their RSS samplers."""
    try:
        await asyncio.to_thread(stop_all, [s.process for s in services], grace=_STOP_TIMEOUT_S)
    finally:
        for service in services:
            await service.stop()  # already stopped: only ends its RSS sampler


async def collector_processes(
    endpoints: Endpoints,
    workdir: Path,
    *,
    processes: int,
    devices: int,
    seconds: float,
    chunk_bytes: int,
    event_loop: str = "asyncio",
) -> ScalingFigures:
    """``processes`` collectors with ``--reuse-port`` on one port, ``devices`` closed-loop
    uploaders for ``seconds`` (the loop of ``collector_load``); every process is stopped on the
    way out, also on error."""
    if processes < 1 or devices < 1:
        raise ValueError("processes and devices must be >= 1")
    topic = f"bench-scaling-{uuid.uuid4().hex[:8]}"
    await ensure_topics(
        endpoints.kafka_bootstrap,
        [TopicSpec(topic, 8, {"max.message.bytes": str(MAX_RECORD_BYTES)})],
    )
    devices_file, tokens = bench_devices(workdir / "scaling-devices.json", devices)
    env = bench_env(endpoints, topic, devices_file)
    port = free_port()
    argv = ["collector", "--port", str(port), "--device-rate", "0", "--reuse-port"]
    argv += ["--event-loop", event_loop]
    base = f"http://127.0.0.1:{port}"
    services: list[Service] = []
    cpu: list[float] = []
    try:
        for index in range(processes):
            log_path = workdir / f"scaling-{processes}x-{event_loop}-{index}.log"
            services.append(Service.start(argv, env, log_path))
        deadline = time.monotonic() + _READY_TIMEOUT_S
        for service in services:
            await service.process.ready(
                functools.partial(service.process.logged, _LISTENING),
                within=max(0.0, deadline - time.monotonic()),
            )
            service.watch()
        # Kafka connected, HTTP answering
        await services[0].process.ready(http_ok(f"{base}/readyz"))
        tally, elapsed = await closed_loop(
            base, list(tokens.values()), seconds=seconds, chunk_bytes=chunk_bytes
        )
        dead = [s.process.pid for s in services if not s.process.running]
        if dead:
            raise LaunchError(f"collector processes {dead} exited during the run")
        cpu = [cpu_seconds(s.process.pid) for s in services]
    finally:
        await _stop_all(services)
    peaks = [s.peak_rss_mib for s in services]
    return ScalingFigures(
        **asdict(tally.figures(elapsed, max(peaks))),
        processes=processes,
        peak_rss_mib_per_process=peaks,
        total_peak_rss_mib=sum(peaks),
        cpu_seconds_per_process=cpu,
    )
