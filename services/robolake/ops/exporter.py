"""``robolake exporter``: the dataset's size and splits as Prometheus gauges, from the tables.

Every ``interval`` seconds it scans the dataset (:func:`robolake.ops.inventory.scan`) and
replaces its gauges with what it found: stored bytes, episodes, recorded time and attributed
bytes by scene, by capture point and by organisation, and the last episode of each capture
point. The numbers come from the episodes index and the tables' snapshot summaries (the bucket
layout: the index and a shard listing), so they survive restarts of any process and a scan
costs the number of episodes and tables, not of data files; the recording rules in
``deploy/prometheus/rules/`` turn them into progress toward the target and an ETA. One exporter
per bucket is enough (it holds no state but a cache); two give the same numbers, which the
rules take the ``max`` of.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from robolake.dataset.storage import s3_filesystem
from robolake.endpoints import Endpoints
from robolake.episode.manifest import SCENES
from robolake.ops.attribution import ShardAttribution
from robolake.ops.inventory import Inventory, aggregate, scan
from robolake.ops.metrics import DEFAULT_TARGET_BYTES, DatasetMetrics

log = logging.getLogger(__name__)

#: The default deadline of the target: 1 PB in about 24 months from the programme's start.
DEFAULT_TARGET_DATE = dt.date(2028, 1, 1)


@dataclass(frozen=True)
class ExporterSettings:
    """What one exporter process needs besides the endpoints."""

    #: Seconds between scans of the bucket.
    interval_s: float = 300.0
    #: The device registry, only for index rows written before they carried the organisation
    #: (the legacy fallback); without it those rows count as ``unknown``.
    devices_file: Path | None = None
    target_bytes: int = DEFAULT_TARGET_BYTES
    target_date: dt.date = DEFAULT_TARGET_DATE
    host: str = "0.0.0.0"  # noqa: S104 - Prometheus scrapes from other hosts
    port: int = 9465


@dataclass
class Exporter:
    """Scans the bucket and keeps :class:`DatasetMetrics` equal to what it holds."""

    settings: ExporterSettings
    endpoints: Endpoints
    metrics: DatasetMetrics = field(default_factory=DatasetMetrics)

    def __post_init__(self) -> None:
        self._attribution = ShardAttribution(
            s3_filesystem(self.endpoints), self.endpoints.s3_bucket
        )
        self.metrics.target_bytes.set(self.settings.target_bytes)
        deadline = dt.datetime.combine(self.settings.target_date, dt.time(), tzinfo=dt.UTC)
        self.metrics.target_deadline.set(deadline.timestamp())

    def scan_once(self) -> Inventory:
        """One blocking scan (run it in a thread)."""
        return scan(self.endpoints, self._attribution, self.settings.devices_file)

    def apply(self, inventory: Inventory) -> None:
        """Replace every dataset gauge with the scan's numbers (call it on the loop thread)."""
        m = self.metrics
        m.stored_bytes.set(inventory.stored_bytes)
        m.shard_files.set(inventory.shard_files)
        m.unindexed_bytes.set(inventory.unindexed_bytes)
        episodes = inventory.episodes
        for known in SCENES:
            for gauge in m.by_scene():
                gauge.labels(known).set(0)
        for row in aggregate(episodes, ["scene"]).to_pylist():
            scene = str(row["scene"])
            m.scene_episodes.labels(scene).set(row["episodes"])
            m.scene_complete.labels(scene).set(row["complete_episodes"])
            m.scene_flagged.labels(scene).set(row["flagged_episodes"])
            m.scene_seconds.labels(scene).set(row["recorded_seconds"])
            m.scene_bytes.labels(scene).set(row["bytes"])
        for gauge in (*m.by_capture_point(), *m.by_organisation()):
            gauge.clear()
        for row in aggregate(episodes, ["capture_point_id"]).to_pylist():
            point = str(row["capture_point_id"])
            m.point_episodes.labels(point).set(row["episodes"])
            m.point_seconds.labels(point).set(row["recorded_seconds"])
            m.point_bytes.labels(point).set(row["bytes"])
            m.point_last_episode.labels(point).set(row["last_ended_at"] / 1e9)
        for row in aggregate(episodes, ["organisation"]).to_pylist():
            organisation = str(row["organisation"])
            m.org_episodes.labels(organisation).set(row["episodes"])
            m.org_seconds.labels(organisation).set(row["recorded_seconds"])
            m.org_bytes.labels(organisation).set(row["bytes"])

    async def run(self, stop: asyncio.Event) -> None:
        """Scan every ``interval_s`` until ``stop``; a failed scan keeps the previous numbers."""
        while not stop.is_set():
            began = time.perf_counter()
            try:
                inventory = await asyncio.to_thread(self.scan_once)
            except (OSError, ValueError) as exc:  # pyarrow raises OSError for S3 failures
                self.metrics.scans.labels("failed").inc()
                log.warning("scan of s3://%s failed: %s", self.endpoints.s3_bucket, exc)
            else:
                self.apply(inventory)
                elapsed = time.perf_counter() - began
                self.metrics.scans.labels("ok").inc()
                self.metrics.scan_seconds.set(elapsed)
                self.metrics.last_success.set(time.time())
                log.info(
                    "scanned s3://%s in %.2f s: %d episodes, %d shard files, %.3f GB stored",
                    self.endpoints.s3_bucket,
                    elapsed,
                    inventory.episodes.num_rows,
                    inventory.shard_files,
                    inventory.stored_bytes / 1e9,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.settings.interval_s)


async def serve(settings: ExporterSettings, endpoints: Endpoints) -> None:
    """Run the exporter with ``/metrics`` until SIGTERM/SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    exporter = Exporter(settings, endpoints)

    async def handler(_: web.Request) -> web.Response:
        body = generate_latest(exporter.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.port, reuse_address=True).start()
        log.info("exporter metrics on http://%s:%d/metrics", settings.host, settings.port)
        await exporter.run(stop)
    finally:
        await runner.cleanup()
