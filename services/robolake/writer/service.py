"""Running a writer process: connections, ``/metrics``, signals, graceful shutdown.

SIGTERM or SIGINT -> the loop stops polling, flushes every partition, commits, leaves the group
(so the others take over at once instead of after a session timeout) and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import uuid

from robolake.endpoints import Endpoints
from robolake.kafka.producer import ProducerFactory, aiokafka_producer, start_when_reachable
from robolake.lake.catalog import LakeTables
from robolake.lake.errors import CatalogUnavailable
from robolake.metrics_http import serve_metrics
from robolake.writer import coordinator
from robolake.writer.committer import TableCommitter
from robolake.writer.consumer import Writer
from robolake.writer.deadletters import KafkaDeadLetters
from robolake.writer.errors import WriterError
from robolake.writer.ledger import BucketLedger, Ledger, TableLedger
from robolake.writer.metrics import WriterMetrics
from robolake.writer.settings import WriterSettings
from robolake.writer.storage import MinioStore, ObjectStore

log = logging.getLogger(__name__)


async def _ledger(
    settings: WriterSettings,
    endpoints: Endpoints,
    store: ObjectStore,
    stop: asyncio.Event,
    stack: contextlib.AsyncExitStack,
    metrics: WriterMetrics,
) -> Ledger | None:
    """The system of record the settings ask for; None if stopped while the catalog is down.

    With ``--committer elected`` the table ledger commits through the group's elected committer
    (:mod:`robolake.writer.coordinator`), and this process is a candidate for that role; the
    staging intervals are then aligned to wall time, the same in every process, so the elected
    committer gets the group's flushes together and commits them in one snapshot per table.
    """
    record = settings.record
    if record == "auto":
        record = "tables" if endpoints.catalog_uri else "bucket"
    if record == "bucket":
        log.info("system of record: Kafka offsets and bucket checkpoints (listing layout)")
        return BucketLedger(store)
    if not endpoints.catalog_uri:
        raise WriterError(
            "--record tables needs an Iceberg catalog: set ROBOLAKE_CATALOG_URI (the local stack "
            "exports it), or run with --record bucket"
        )
    token = uuid.uuid4().hex[:12]
    elected = settings.committer == "elected"
    client: coordinator.CommitClient | None = None
    send_answer: coordinator.Send | None = None
    if elected:
        client, send_answer = await coordinator.start_client(
            stack, settings, endpoints.kafka_bootstrap
        )
    delay = 0.5
    while not stop.is_set():
        try:
            tables = await asyncio.to_thread(LakeTables.from_endpoints, endpoints)
            ledger = TableLedger(
                store,
                tables,
                token,
                commit_interval_s=settings.commit_interval_s,
                commit_pause_s=settings.commit_pause_s,
                committer=TableCommitter if client is None else client.committer,
                monotonic=time.monotonic if client is None else time.time,
            )
            await asyncio.to_thread(ledger.start)
        except CatalogUnavailable as exc:
            log.warning("catalog unavailable (%s); retrying in %.1f s", exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(2 * delay, settings.max_backoff_s)
            continue
        log.info(
            "system of record: Iceberg tables in namespace %s at %s (writer token %s, %s)",
            endpoints.catalog_namespace,
            endpoints.catalog_uri,
            token,
            "commits by the group's elected committer" if elected else "commits its own",
        )
        if send_answer is not None:
            await coordinator.start_candidacy(
                stack, settings, endpoints.kafka_bootstrap, tables, send_answer, metrics
            )
        return ledger
    return None


async def serve(
    settings: WriterSettings,
    endpoints: Endpoints,
    *,
    stop: asyncio.Event | None = None,
    metrics: WriterMetrics | None = None,
    store: ObjectStore | None = None,
    producer_factory: ProducerFactory = aiokafka_producer,
) -> None:
    """Run one writer until SIGTERM/SIGINT (or ``stop``), then flush, commit and return.

    Every resource is entered on one exit stack as soon as it exists, so whatever fails later
    still closes what came before, in reverse order: dead-letter producer, ``/metrics``.
    """
    async with contextlib.AsyncExitStack() as stack:
        if stop is None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
                stack.callback(loop.remove_signal_handler, sig)
        metrics = metrics or WriterMetrics()
        store = store or MinioStore(endpoints, part_bytes=settings.part_bytes)
        if settings.metrics_port is not None:
            await serve_metrics(
                stack,
                metrics.registry,
                settings.metrics_host,
                settings.metrics_port,
                error=WriterError,
                hint="is another process (another writer?) on that port? Stop it or pick "
                "another --metrics-port",
            )
            log.info(
                "metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port
            )
        dead_letters = KafkaDeadLetters(
            endpoints.kafka_bootstrap,
            settings.dead_letter_topic,
            max_backoff_s=settings.max_backoff_s,
            factory=producer_factory,
        )
        stack.push_async_callback(dead_letters.stop)
        if not await start_when_reachable(dead_letters, stop):
            return
        ledger = await _ledger(settings, endpoints, store, stop, stack, metrics)
        if ledger is None:
            return
        writer = Writer(
            settings,
            endpoints.kafka_bootstrap,
            store=store,
            dead_letters=dead_letters,
            metrics=metrics,
            ledger=ledger,
        )
        await writer.run(stop)
