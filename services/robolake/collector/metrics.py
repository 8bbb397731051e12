"""The collector's Prometheus metrics, defined in one place with bounded label values.

Labels: ``route`` is the route template (never the raw path), ``method`` a standard HTTP
method or ``OTHER``, ``status`` an HTTP status,
``reason`` a problem reason (a closed set), ``capture_point`` a capture point id (at most a few
thousand), ``worker`` the index of a worker process of one collector command (at most its
``--workers``, one per core). Episode ids are never labels.

With ``--workers N`` (``collector/workers.py``) each worker records into its own files in a
directory the master owns (prometheus_client's multiprocess mode) and ``/metrics`` of any worker
serves the merge of all of them: counters and histograms summed over the workers (those of a
worker that died and was replaced included, so they never go backwards), gauges as their
``multiprocess_mode`` below says. One scrape of the port is then the whole collector's view,
whichever worker the kernel hands the connection to; per-worker spread is
``robolake_collector_worker_requests_total{worker}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector

from robolake.collector.errors import CollectorError
from robolake.collector.problems import CollectorReason
from robolake.episode.errors import REASONS

#: HTTP methods counted by name; anything else a client sends is counted as ``OTHER``, so a
#: client cannot mint label values (and series) by inventing methods.
HTTP_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})


def method_label(method: str) -> str:
    """The ``method`` label of a request: its method if standard, else ``OTHER``."""
    return method if method in HTTP_METHODS else "OTHER"


_LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class CollectorMetrics:
    """All metrics of one collector process, on its own registry (so tests can run several).

    ``worker`` is this process's index among the workers of one command (0 for a single
    process); ``multiprocess_dir`` the directory every worker of the command records into,
    whose merge :meth:`exposition` serves (None: this process's registry alone). The directory
    must be in ``$PROMETHEUS_MULTIPROC_DIR`` before prometheus_client is imported, which is how
    the master starts its workers.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        worker: int = 0,
        multiprocess_dir: Path | None = None,
    ) -> None:
        if multiprocess_dir is not None and not values.ValueClass._multiprocess:
            raise CollectorError(
                "prometheus_client was imported before $PROMETHEUS_MULTIPROC_DIR was set, so "
                "this worker's metrics would stay in memory; start workers through the master"
            )
        self.multiprocess_dir = multiprocess_dir
        self.worker = str(worker)
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "robolake_collector_requests_total",
            "HTTP requests by route template and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.worker_requests = Counter(
            "robolake_collector_worker_requests_total",
            "HTTP requests answered by each worker process of a collector (the kernel's spread "
            "of connections over --workers).",
            ["worker"],
            registry=r,
        ).labels(self.worker)
        self.rejections = Counter(
            "robolake_collector_rejections_total",
            "Refused requests by problem reason.",
            ["reason"],
            registry=r,
        )
        self.chunks_accepted = Counter(
            "robolake_collector_chunks_accepted_total",
            "Chunks acknowledged (in Kafka with acks=all).",
            registry=r,
        )
        self.bytes_accepted = Counter(
            "robolake_collector_bytes_accepted_total",
            "Chunk payload bytes acknowledged.",
            registry=r,
        )
        self.capture_point_bytes = Counter(
            "robolake_collector_capture_point_bytes_total",
            "Chunk payload bytes acknowledged per capture point.",
            ["capture_point"],
            registry=r,
        )
        self.capture_point_episodes = Counter(
            "robolake_collector_capture_point_episodes_total",
            "Episodes registered per capture point.",
            ["capture_point"],
            registry=r,
        )
        self.episodes_completed = Counter(
            "robolake_collector_episodes_completed_total",
            "Completion records acknowledged.",
            registry=r,
        )
        self.ack_latency = Histogram(
            "robolake_collector_chunk_ack_seconds",
            "From the first byte of a chunk upload to its acknowledgement.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.produce_latency = Histogram(
            "robolake_collector_kafka_produce_seconds",
            "Kafka produce round trip with acks=all.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.produce_errors = Counter(
            "robolake_collector_kafka_produce_errors_total",
            "Records Kafka did not acknowledge (timeouts, broker errors).",
            registry=r,
        )
        self.producer_renewals = Counter(
            "robolake_collector_kafka_producer_renewals_total",
            "Kafka producers replaced after a fatal idempotence error (a broker restart).",
            registry=r,
        )
        self.inflight_bytes = Gauge(
            "robolake_collector_inflight_bytes",
            "Request body bytes reserved (being received or produced).",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.inflight_capacity = Gauge(
            "robolake_collector_inflight_capacity_bytes",
            "The in-flight bytes cap of this collector (the sum over its worker processes).",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.ready = Gauge(
            "robolake_collector_ready",
            "1 when the collector takes uploads (Kafka reachable, not draining; with several "
            "workers, 1 only when every live worker does).",
            multiprocess_mode="livemin",
            registry=r,
        )
        # Every refusal reason exists from the start (at 0): dashboards and ratios then see the
        # first refusal as a rate instead of a series that springs into existence.
        for reason in (*get_args(CollectorReason), *REASONS):
            if reason != "record_invalid":  # writer-side only
                self.rejections.labels(reason)

    def exposition(self) -> bytes:
        """The Prometheus text of ``/metrics``: every worker's merged, or this process's."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry(auto_describe=True)
        MultiProcessCollector(merged, path=str(self.multiprocess_dir))  # type: ignore[no-untyped-call]
        return generate_latest(merged)
