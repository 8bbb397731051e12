"""The writer's Prometheus metrics, defined in one place with bounded label values.

Labels: ``partition`` (the chunk topic's partitions, tens), ``stream_type`` (the files in
``schemas/stream_types/``), ``reason`` (a flush reason or a dead-letter reason, closed sets),
``outcome`` (closed). Episode ids and capture points are never labels here.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from robolake.episode.errors import REASONS

FlushReason = Literal["size", "age", "revoke", "shutdown", "memory", "timeout"]
#: Why a partition was flushed; ``timeout`` = an episode gave up on, nothing else pending.
FLUSH_REASONS: Final[tuple[FlushReason, ...]] = get_args(FlushReason)

RecordOutcome = Literal["stored", "duplicate", "dead_letter"]
RECORD_OUTCOMES: Final[tuple[RecordOutcome, ...]] = get_args(RecordOutcome)

_FLUSH_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
#: Finer where table commits fall (0.1-2 s measured), so p50/p99 estimates mean something.
_COMMIT_BUCKETS: Final = (
    0.025,
    0.05,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.65,
    0.8,
    1.0,
    1.25,
    1.5,
    2.0,
    3.0,
    5.0,
    10.0,
    30.0,
)


class WriterMetrics:
    """All metrics of one writer process, on its own registry (so tests can run several)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.lag = Gauge(
            "robolake_writer_consumer_lag_records",
            "Records of a partition not yet durably stored: high watermark minus committed offset.",
            ["partition"],
            registry=r,
        )
        self.records = Counter(
            "robolake_writer_records_total",
            "Records consumed, by outcome (stored, duplicate, dead_letter).",
            ["outcome"],
            registry=r,
        )
        self.consumed_bytes = Counter(
            "robolake_writer_consumed_bytes_total",
            "Record value bytes consumed.",
            registry=r,
        )
        self.shard_files = Counter(
            "robolake_writer_shard_files_total",
            "Parquet shard files written, by stream type.",
            ["stream_type"],
            registry=r,
        )
        self.shard_bytes = Counter(
            "robolake_writer_shard_bytes_total",
            "Parquet shard bytes written, by stream type.",
            ["stream_type"],
            registry=r,
        )
        self.shard_rows = Counter(
            "robolake_writer_shard_rows_total",
            "Rows written to shards, by stream type.",
            ["stream_type"],
            registry=r,
        )
        self.index_rows = Counter(
            "robolake_writer_index_rows_total",
            "Episodes index rows written, by whether the episode is complete.",
            ["complete"],
            registry=r,
        )
        self.flushes = Counter(
            "robolake_writer_flushes_total",
            "Flushes committed, by reason (size, age, revoke, shutdown, memory, timeout).",
            ["reason"],
            registry=r,
        )
        self.flush_seconds = Histogram(
            "robolake_writer_flush_seconds",
            "Duration of a flush: encode, upload, commit.",
            buckets=_FLUSH_BUCKETS,
            registry=r,
        )
        self.flush_failures = Counter(
            "robolake_writer_flush_failures_total",
            "Flush attempts that failed because storage was unavailable (retried).",
            registry=r,
        )
        self.dead_letters = Counter(
            "robolake_writer_dead_letters_total",
            "Records sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=r,
        )
        self.table_commit_seconds = Histogram(
            "robolake_writer_table_commit_seconds",
            "Duration of committing one flush to the Iceberg tables (every table it wrote "
            "and the index), conflicts retried included.",
            buckets=_COMMIT_BUCKETS,
            registry=r,
        )
        self.table_commit_flushes = Histogram(
            "robolake_writer_table_commit_flushes",
            "Flushes of one partition that one table commit made durable: more than 1 when "
            "flushes were staged to share a snapshot (--commit-interval).",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64),
            registry=r,
        )
        self.table_commit_conflicts = Counter(
            "robolake_writer_table_commit_conflicts_total",
            "Table commits that conflicted with another commit and were re-checked and retried.",
            registry=r,
        )
        self.elected_committer = Gauge(
            "robolake_writer_elected_committer",
            "1 while this writer is its group's elected committer (--committer elected): it "
            "commits every writer's flushes to the tables; exactly one writer of a group has 1.",
            registry=r,
        )
        self.commit_requests_answered = Counter(
            "robolake_writer_commit_requests_answered_total",
            "Commit requests of the group's writers this writer answered as elected committer, "
            "by outcome (landed, already: a repeated request, fenced: refused by the offsets, "
            "unavailable: the catalog failed; the requester retries).",
            ["outcome"],
            registry=r,
        )
        self.fenced = Counter(
            "robolake_writer_fenced_total",
            "Flushes refused because a table recorded an offset this writer did not expect "
            "(another writer owns the partition); the partition resumes from the tables.",
            registry=r,
        )
        self.buffered_bytes = Gauge(
            "robolake_writer_buffered_bytes",
            "Chunk bytes buffered in memory, waiting for a flush.",
            registry=r,
        )
        self.buffer_capacity = Gauge(
            "robolake_writer_buffer_capacity_bytes",
            "The buffered-bytes cap of this process.",
            registry=r,
        )
        self.paused = Gauge(
            "robolake_writer_paused",
            "1 while consumption is paused for backpressure (storage unavailable).",
            registry=r,
        )
        self.assigned_partitions = Gauge(
            "robolake_writer_assigned_partitions",
            "Partitions this process owns.",
            registry=r,
        )
        self.stored_bytes = Gauge(
            "robolake_writer_dataset_stored_bytes",
            "Bytes of shards and episodes index: the tables' snapshot summaries, or a periodic "
            "listing of the bucket layout.",
            registry=r,
        )
        for reason in FLUSH_REASONS:
            self.flushes.labels(reason)
        for outcome in RECORD_OUTCOMES:
            self.records.labels(outcome)
        for answer in ("landed", "already", "fenced", "unavailable"):
            self.commit_requests_answered.labels(answer)
        # Every series exists from the start (at 0), so rates and "dead letters appearing"
        # alerts see the first one instead of a series that springs into existence.
        for dead_letter_reason in REASONS:
            self.dead_letters.labels(dead_letter_reason)
