"""The exporter's Prometheus metrics, defined in one place with bounded label values.

These are gauges of what the bucket holds, recomputed by every scan from the episodes index and
the shard listing, so a restarted exporter reports the same numbers (counters in the collector
and the writer start again from zero).

Labels: ``scene`` (the manifest's closed set, 7 values), ``capture_point`` (capture point ids, at
most a few thousand), ``organisation`` (the device registry's organisations, fewer than capture
points), ``outcome`` (closed). Scene and capture point are separate families, never crossed, so
the series count stays at ``scenes + capture points + organisations``. Episode ids are never
labels.
"""

from __future__ import annotations

from typing import Final, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge

from robolake.episode.manifest import SCENES

ScanOutcome = Literal["ok", "failed"]

#: The default target of the whole programme: one petabyte (decimal).
DEFAULT_TARGET_BYTES: Final = 10**15


class DatasetMetrics:
    """All metrics of one exporter process, on its own registry (so tests can run several)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # -- the whole dataset -----------------------------------------------------------------
        self.stored_bytes = Gauge(
            "robolake_dataset_stored_bytes",
            "Bytes of every table's data files, from the current snapshots' summaries (the "
            "bucket layout: every object under shards/ and index/): the number that counts "
            "toward the target.",
            registry=r,
        )
        self.shard_files = Gauge(
            "robolake_dataset_shard_files",
            "Parquet data files of the shard tables (the bucket layout: shard objects).",
            registry=r,
        )
        self.unindexed_bytes = Gauge(
            "robolake_dataset_unindexed_shard_bytes",
            "Shard bytes of rows whose episode has no index row yet (open episodes, or a "
            "manifest that never arrived).",
            registry=r,
        )
        self.target_bytes = Gauge(
            "robolake_dataset_target_bytes",
            "The programme's target size (--target-bytes, 1 PB by default).",
            registry=r,
        )
        self.target_deadline = Gauge(
            "robolake_dataset_target_deadline_timestamp_seconds",
            "When the target should be reached (--target-date), Unix seconds.",
            registry=r,
        )
        # -- by scene --------------------------------------------------------------------------
        self.scene_episodes = Gauge(
            "robolake_dataset_episodes",
            "Indexed episodes (newest index row per episode), by scene.",
            ["scene"],
            registry=r,
        )
        self.scene_complete = Gauge(
            "robolake_dataset_complete_episodes",
            "Indexed episodes that are complete (every declared chunk and row stored), by scene.",
            ["scene"],
            registry=r,
        )
        self.scene_flagged = Gauge(
            "robolake_dataset_flagged_episodes",
            "Indexed episodes with at least one quality flag, by scene.",
            ["scene"],
            registry=r,
        )
        self.scene_seconds = Gauge(
            "robolake_dataset_recorded_seconds",
            "Robot time recorded (ended_at - started_at of each indexed episode), by scene.",
            ["scene"],
            registry=r,
        )
        self.scene_bytes = Gauge(
            "robolake_dataset_episode_bytes",
            "Shard bytes attributed to indexed episodes (a file's size split by row share), "
            "by scene.",
            ["scene"],
            registry=r,
        )
        # -- by capture point ------------------------------------------------------------------
        self.point_episodes = Gauge(
            "robolake_dataset_capture_point_episodes",
            "Indexed episodes, by capture point.",
            ["capture_point"],
            registry=r,
        )
        self.point_seconds = Gauge(
            "robolake_dataset_capture_point_recorded_seconds",
            "Robot time recorded, by capture point.",
            ["capture_point"],
            registry=r,
        )
        self.point_bytes = Gauge(
            "robolake_dataset_capture_point_bytes",
            "Shard bytes attributed to indexed episodes, by capture point.",
            ["capture_point"],
            registry=r,
        )
        self.point_last_episode = Gauge(
            "robolake_dataset_capture_point_last_episode_timestamp_seconds",
            "End (ended_at) of the newest indexed episode of a capture point, Unix seconds: "
            "how long a capture point has been silent, across restarts.",
            ["capture_point"],
            registry=r,
        )
        # -- by organisation -------------------------------------------------------------------
        self.org_episodes = Gauge(
            "robolake_dataset_organisation_episodes",
            "Indexed episodes, by organisation of the uploading device (device registry).",
            ["organisation"],
            registry=r,
        )
        self.org_seconds = Gauge(
            "robolake_dataset_organisation_recorded_seconds",
            "Robot time recorded, by organisation.",
            ["organisation"],
            registry=r,
        )
        self.org_bytes = Gauge(
            "robolake_dataset_organisation_bytes",
            "Shard bytes attributed to indexed episodes, by organisation.",
            ["organisation"],
            registry=r,
        )
        # -- the exporter itself ---------------------------------------------------------------
        self.scans = Counter(
            "robolake_exporter_scans_total",
            "Scans of the bucket, by outcome (ok, failed).",
            ["outcome"],
            registry=r,
        )
        self.scan_seconds = Gauge(
            "robolake_exporter_scan_seconds",
            "Duration of the last successful scan.",
            registry=r,
        )
        self.last_success = Gauge(
            "robolake_exporter_last_success_timestamp_seconds",
            "When the last successful scan finished, Unix seconds (0 before the first).",
            registry=r,
        )
        outcome: ScanOutcome
        for outcome in ("ok", "failed"):
            self.scans.labels(outcome)
        self.target_bytes.set(DEFAULT_TARGET_BYTES)
        for scene in SCENES:
            for gauge in self.by_scene():
                gauge.labels(scene).set(0)

    def by_scene(self) -> tuple[Gauge, ...]:
        """The gauges labelled by scene."""
        return (
            self.scene_episodes,
            self.scene_complete,
            self.scene_flagged,
            self.scene_seconds,
            self.scene_bytes,
        )

    def by_capture_point(self) -> tuple[Gauge, ...]:
        """The gauges labelled by capture point."""
        return (self.point_episodes, self.point_seconds, self.point_bytes, self.point_last_episode)

    def by_organisation(self) -> tuple[Gauge, ...]:
        """The gauges labelled by organisation."""
        return (self.org_episodes, self.org_seconds, self.org_bytes)
