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
from robolake.collector.errors import KafkaUnavailable
from robolake.collector.metrics import CollectorMetrics
from robolake.collector.protocol import CollectorRunner
from robolake.collector.settings import CollectorSettings
from robolake.collector.sink import KafkaSink
from robolake.devices.registry import DeviceRegistry
from robolake.endpoints import Endpoints

log = logging.getLogger(__name__)


async def _connect(sink: KafkaSink, stop: asyncio.Event, bootstrap: str) -> bool:
    """Start the producer, retrying with backoff until Kafka answers or we are told to stop."""
    delay = 0.5
    while not stop.is_set():
        try:
            await sink.start()
            return True
        except KafkaUnavailable as exc:
            log.warning(
                "Kafka at %s not reachable yet (%s); retrying in %.1f s", bootstrap, exc, delay
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(delay * 2, 10.0)
    return False


async def serve(settings: CollectorSettings, endpoints: Endpoints) -> None:
    """Run one collector until SIGTERM/SIGINT, then drain and return."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    metrics = CollectorMetrics()
    sink = KafkaSink(endpoints.kafka_bootstrap, metrics=metrics, send_timeout=settings.send_timeout)
    if not await _connect(sink, stop, endpoints.kafka_bootstrap):
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
    await site.start()
    metrics.ready.set(1)
    log.info(
        "collector listening on %s://%s:%d%s (Kafka %s, topic %s)",
        "https" if ssl_context else "http",
        settings.host,
        settings.port,
        " with SO_REUSEPORT" if settings.reuse_port else "",
        endpoints.kafka_bootstrap,
        collector.topic,
    )
    try:
        await stop.wait()
    finally:
        log.info(
            "draining: refusing new uploads, waiting for %d in flight",
            collector.state.inflight_requests,
        )
        collector.state.draining = True
        metrics.ready.set(0)
        deadline = time.monotonic() + settings.drain_seconds
        while collector.state.inflight_requests > 0 and time.monotonic() < deadline:  # noqa: ASYNC110 - bounded poll
            await asyncio.sleep(0.05)
        if collector.state.inflight_requests:
            log.warning(
                "%d uploads still in flight at the drain deadline",
                collector.state.inflight_requests,
            )
        await runner.cleanup()
        await sink.stop()
        log.info("collector stopped")
