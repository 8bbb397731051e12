"""Running a writer process: connections, ``/metrics``, signals, graceful shutdown.

SIGTERM or SIGINT -> the loop stops polling, flushes every partition, commits, leaves the group
(so the others take over at once instead of after a session timeout) and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from aiohttp import web
from aiokafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from robolake.endpoints import Endpoints
from robolake.writer.consumer import Writer
from robolake.writer.deadletters import KafkaDeadLetters
from robolake.writer.metrics import WriterMetrics
from robolake.writer.settings import WriterSettings
from robolake.writer.storage import MinioStore, ObjectStore

log = logging.getLogger(__name__)


async def _metrics_server(metrics: WriterMetrics, host: str, port: int) -> web.AppRunner:
    async def handler(_: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    return runner


async def _start_with_retry(dead_letters: KafkaDeadLetters, stop: asyncio.Event) -> bool:
    delay = 0.5
    while not stop.is_set():
        try:
            await dead_letters.start()
            return True
        except KafkaError as exc:
            log.warning("Kafka not reachable yet (%s); retrying in %.1f s", exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(2 * delay, 10.0)
    return False


async def serve(
    settings: WriterSettings,
    endpoints: Endpoints,
    *,
    stop: asyncio.Event | None = None,
    metrics: WriterMetrics | None = None,
    store: ObjectStore | None = None,
) -> None:
    """Run one writer until SIGTERM/SIGINT (or ``stop``), then flush, commit and return."""
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    metrics = metrics or WriterMetrics()
    store = store or MinioStore(endpoints, part_bytes=settings.part_bytes)
    runner: web.AppRunner | None = None
    if settings.metrics_port is not None:
        runner = await _metrics_server(metrics, settings.metrics_host, settings.metrics_port)
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)
    dead_letters = KafkaDeadLetters(
        endpoints.kafka_bootstrap, settings.dead_letter_topic, max_backoff_s=settings.max_backoff_s
    )
    try:
        if not await _start_with_retry(dead_letters, stop):
            return
        writer = Writer(
            settings,
            endpoints.kafka_bootstrap,
            store=store,
            dead_letters=dead_letters,
            metrics=metrics,
        )
        await writer.run(stop)
    finally:
        await dead_letters.stop()
        if runner is not None:
            await runner.cleanup()
