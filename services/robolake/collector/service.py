"""Running a collector process: Kafka connection, HTTP server, graceful shutdown.

SIGTERM or SIGINT → ``/readyz`` turns 503 and new uploads get 503 ``draining`` (the load balancer
moves devices to other replicas); uploads already in flight get up to ``drain_seconds`` to finish
and be acknowledged; then the server closes, the producer flushes, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import time

from aiohttp import web

from robolake.collector.app import Collector
from robolake.collector.errors import CollectorError
from robolake.collector.metrics import CollectorMetrics
from robolake.collector.protocol import CollectorRunner
from robolake.collector.settings import CollectorSettings
from robolake.collector.sink import PRODUCER_FACTORIES, KafkaSink
from robolake.collector.workers import WorkerRole
from robolake.devices.registry import DeviceRegistry
from robolake.endpoints import Endpoints
from robolake.kafka.producer import ProducerFactory, start_when_reachable

log = logging.getLogger(__name__)


async def _drain(collector: Collector, metrics: CollectorMetrics, drain_seconds: float) -> None:
    """Refuse new uploads and give those in flight until the deadline to be acknowledged."""
    log.info(
        "draining: refusing new uploads, waiting for %d in flight",
        collector.state.inflight_requests,
    )
    collector.state.draining = True
    metrics.ready.set(0)
    deadline = time.monotonic() + drain_seconds
    while collector.state.inflight_requests > 0 and time.monotonic() < deadline:  # noqa: ASYNC110 - bounded poll
        await asyncio.sleep(0.05)
    if collector.state.inflight_requests:
        log.warning(
            "%d uploads still in flight at the drain deadline", collector.state.inflight_requests
        )


async def serve(
    settings: CollectorSettings,
    endpoints: Endpoints,
    *,
    stop: asyncio.Event | None = None,
    producer_factory: ProducerFactory | None = None,
    worker: WorkerRole | None = None,
) -> None:
    """Run one collector until SIGTERM/SIGINT (or ``stop``), then drain and return.

    ``producer_factory``: the Kafka client (tests inject one); else ``settings.producer``'s.
    ``worker``: this process is one of the workers of a master (``collector/workers.py``); its
    metrics go to the master's directory and ``/metrics`` serves every worker's.

    Every resource is entered on one exit stack as soon as it exists, so whatever fails later
    (Kafka never answering, the port taken, a bad TLS key) still closes what came before, in
    reverse order: drain, HTTP server, producer.
    """
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(log.info, "collector stopped")
        if stop is None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
                stack.callback(loop.remove_signal_handler, sig)
        if worker is None:
            metrics = CollectorMetrics()
        else:
            metrics = CollectorMetrics(worker=worker.index, multiprocess_dir=worker.metrics_dir)
        sink = KafkaSink(
            endpoints.kafka_bootstrap,
            metrics=metrics,
            send_timeout=settings.send_timeout,
            factory=producer_factory or PRODUCER_FACTORIES[settings.producer],
        )
        stack.push_async_callback(sink.stop)
        if not await start_when_reachable(sink, stop):
            return
        collector = Collector(
            settings, registry=DeviceRegistry(settings.devices_file), sink=sink, metrics=metrics
        )
        runner = CollectorRunner(
            collector.build(),
            metrics=metrics,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=settings.drain_seconds,
        )
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        ssl_context = None
        if settings.tls_cert is not None and settings.tls_key is not None:
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.minimum_version = ssl.TLSVersion.TLSv1_2
            ssl_context.load_cert_chain(settings.tls_cert, settings.tls_key)
        site = web.TCPSite(
            runner,
            settings.host,
            settings.port,
            reuse_address=True,
            reuse_port=settings.reuse_port,
            ssl_context=ssl_context,
        )
        try:
            await site.start()
        except OSError as exc:
            raise CollectorError(
                f"cannot listen on {settings.host}:{settings.port} ({exc.strerror or exc}); "
                "is another process (another collector?) on that port? Stop it or pick "
                "another --port"
            ) from exc
        stack.push_async_callback(_drain, collector, metrics, settings.drain_seconds)
        metrics.ready.set(1)
        log.info(
            "collector listening on %s://%s:%d%s (Kafka %s, topic %s, producer %s)%s",
            "https" if ssl_context else "http",
            settings.host,
            settings.port,
            " with SO_REUSEPORT" if settings.reuse_port else "",
            endpoints.kafka_bootstrap,
            collector.topic,
            settings.producer if producer_factory is None else "injected",
            "" if worker is None else f": worker={worker.index} master={worker.master_pid}",
        )
        await stop.wait()
