"""The writer's settings: flags override environment variables, which override defaults.

Kafka and S3 addresses are not here: they come from :class:`robolake.endpoints.Endpoints`, one
environment for every service.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Final

from robolake.episode.topics import CHUNK_TOPIC, DEAD_LETTER_TOPIC, MAX_RECORD_BYTES
from robolake.writer.errors import WriterError

ENV_CHUNK_TOPIC: Final = "ROBOLAKE_CHUNK_TOPIC"
ENV_DEAD_LETTER_TOPIC: Final = "ROBOLAKE_DEAD_LETTER_TOPIC"
#: Fault injection for tests: seconds to hold still after each object of a flush is uploaded,
#: so a test can kill the process while a flush is half written. Never set it in production.
ENV_UPLOAD_PAUSE: Final = "ROBOLAKE_WRITER_UPLOAD_PAUSE"
#: Fault injection likewise: seconds to hold still after each table commit of a flush but the
#: index's, so a test can kill the writer between the tables of one flush.
ENV_COMMIT_PAUSE: Final = "ROBOLAKE_WRITER_COMMIT_PAUSE"
#: Fault injection: seconds an elected committer holds each batch of requests before committing
#: it, so a test can freeze it with requests in hand (``--committer elected``).
ENV_COMMITTER_PAUSE: Final = "ROBOLAKE_WRITER_COMMITTER_PAUSE"

MIB: Final = 1024 * 1024
DEFAULT_GROUP: Final = "robolake-writer"
RECORDS: Final = ("tables", "bucket", "auto")
#: Who commits a group's flushes to the tables: each process its own, or one elected for all.
COMMITTERS: Final = ("process", "elected")


@dataclass(frozen=True)
class WriterSettings:
    """Everything one writer process needs besides the endpoints.

    Sizes are bytes of chunk payload (the Arrow bytes devices sent) and of encoded shards, which
    is what the process holds in memory. ``max_buffer_bytes`` bounds all of it: buffered chunks,
    flushes prepared and uploading, and the Parquet bytes of the flush being encoded (see
    :attr:`memory_limit_bytes`).
    """

    topic: str = CHUNK_TOPIC
    dead_letter_topic: str = DEAD_LETTER_TOPIC
    group_id: str = DEFAULT_GROUP
    #: Flush a partition when its buffer reaches this many bytes (the shard size target).
    flush_bytes: int = 128 * MIB
    #: Flush a partition when its oldest buffered record is this old (seconds, wall clock).
    flush_age_s: float = 60.0
    #: Cap on the data the process holds (buffers + flushes in progress); see memory_limit_bytes.
    max_buffer_bytes: int = 512 * MIB
    #: Keep an indexed episode's chunk keys this long to drop late retries (seconds).
    dedup_window_s: float = 3600.0
    #: Index an episode as incomplete when no record of it arrived for this long (seconds).
    incomplete_after_s: float = 3600.0
    #: Kafka group session timeout: how soon a crashed writer's partitions move (seconds).
    session_timeout_s: float = 30.0
    #: How often the loop checks ages and timeouts when no records arrive (seconds).
    tick_s: float = 0.5
    #: Multipart part size for uploads; objects larger than this go up in parts.
    part_bytes: int = 16 * MIB
    #: Longest wait between retries of a failing flush (seconds).
    max_backoff_s: float = 10.0
    #: How often to sum the dataset's stored bytes by listing the bucket; 0 turns it off.
    stored_bytes_interval_s: float = 300.0
    metrics_host: str = "0.0.0.0"  # noqa: S104 - Prometheus scrapes from other hosts
    #: Port of ``/metrics``; None serves no metrics endpoint.
    metrics_port: int | None = 9464
    #: Tables mode: a partition's flushes are staged and committed together, at most this
    #: long after the first (seconds; 0 commits every flush). See :class:`TableLedger`.
    commit_interval_s: float = 10.0
    #: Fault injection for tests (see ``ENV_UPLOAD_PAUSE``).
    upload_pause_s: float = 0.0
    #: Fault injection for tests (see ``ENV_COMMIT_PAUSE``).
    commit_pause_s: float = 0.0
    #: Fault injection for tests (see ``ENV_COMMITTER_PAUSE``).
    committer_pause_s: float = 0.0
    #: System of record: "tables" (Iceberg tables, needs ROBOLAKE_CATALOG_URI), "bucket"
    #: (Kafka offsets + bucket checkpoints, the listing layout) or "auto" (tables when a
    #: catalog is configured).
    record: str = "auto"
    #: Tables mode: "process" (each writer process commits its own partitions' flushes) or
    #: "elected" (one writer of the group commits everyone's; :mod:`robolake.writer.coordinator`).
    committer: str = "elected"

    def __post_init__(self) -> None:
        if self.flush_bytes <= 0 or self.max_buffer_bytes < self.flush_bytes // 64:
            raise WriterError(
                f"flush_bytes ({self.flush_bytes}) must be > 0 and max_buffer_bytes "
                f"({self.max_buffer_bytes}) not tiny next to it; use e.g. --flush-bytes 128MiB "
                "--max-buffer-bytes 512MiB"
            )
        if self.record not in RECORDS:
            raise WriterError(f"record must be one of {', '.join(RECORDS)}, not {self.record!r}")
        if self.committer not in COMMITTERS:
            raise WriterError(
                f"committer must be one of {', '.join(COMMITTERS)}, not {self.committer!r}"
            )
        if self.flush_age_s <= 0 or self.tick_s <= 0:
            raise WriterError("flush age and tick must be positive seconds")
        if self.commit_interval_s < 0:
            raise WriterError("the commit interval cannot be negative (0 commits every flush)")

    @property
    def fetch_bytes(self) -> int:
        """Most bytes one Kafka fetch brings (records read ahead of the loop): an eighth of the
        cap, at most 64 MiB, at least two records of the largest size."""
        return max(2 * MAX_RECORD_BYTES, min(64 * MIB, self.max_buffer_bytes // 8))

    @property
    def memory_limit_bytes(self) -> int:
        """Held bytes (buffered chunks + prepared flushes) at which the largest buffer is flushed
        early: the cap less one flush (the room encoding a flush needs for its Parquet bytes
        next to its chunks) and less one fetch read ahead. So the process's data stays within
        ``max_buffer_bytes``."""
        rest = self.max_buffer_bytes - self.flush_bytes - self.fetch_bytes
        return max(rest, self.max_buffer_bytes // 4)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> WriterSettings:
        return cls(
            topic=args.topic,
            dead_letter_topic=args.dead_letter_topic,
            group_id=args.group,
            flush_bytes=args.flush_bytes,
            flush_age_s=args.flush_age,
            max_buffer_bytes=args.max_buffer_bytes,
            dedup_window_s=args.dedup_window,
            incomplete_after_s=args.incomplete_after,
            session_timeout_s=args.session_timeout,
            metrics_host=args.metrics_host,
            metrics_port=None if args.metrics_port < 0 else args.metrics_port,
            stored_bytes_interval_s=args.stored_bytes_interval,
            commit_interval_s=args.commit_interval,
            upload_pause_s=float(os.environ.get(ENV_UPLOAD_PAUSE) or 0.0),
            commit_pause_s=float(os.environ.get(ENV_COMMIT_PAUSE) or 0.0),
            committer_pause_s=float(os.environ.get(ENV_COMMITTER_PAUSE) or 0.0),
            record=args.record,
            committer=args.committer,
        )


def parse_size(text: str) -> int:
    """``134217728``, ``128MiB``, ``64M``, ``1GiB`` -> bytes (binary units)."""
    units = {"k": 1024, "m": MIB, "g": 1024 * MIB}
    value = text.strip().lower().removesuffix("ib").removesuffix("b")
    try:
        if value and value[-1] in units:
            return int(float(value[:-1]) * units[value[-1]])
        return int(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 128MiB") from exc


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The writer's flags; each defaults to a ``ROBOLAKE_WRITER_*`` (or topic) variable."""
    d = WriterSettings()
    parser.add_argument(
        "--topic", default=_env(ENV_CHUNK_TOPIC, d.topic),
        help=f"topic to consume (env {ENV_CHUNK_TOPIC}, default {d.topic})",
    )  # fmt: skip
    parser.add_argument(
        "--dead-letter-topic", default=_env(ENV_DEAD_LETTER_TOPIC, d.dead_letter_topic),
        help=f"where bad records go (env {ENV_DEAD_LETTER_TOPIC}, default {d.dead_letter_topic})",
    )  # fmt: skip
    parser.add_argument(
        "--group", default=_env("ROBOLAKE_WRITER_GROUP", d.group_id),
        help="consumer group; writers in one group share the partitions "
        f"(env ROBOLAKE_WRITER_GROUP, default {d.group_id})",
    )  # fmt: skip
    parser.add_argument(
        "--flush-bytes", type=parse_size, default=_env("ROBOLAKE_WRITER_FLUSH_BYTES", "128MiB"),
        help="flush a partition when it buffers this much (env ROBOLAKE_WRITER_FLUSH_BYTES, "
        "default 128MiB)",
    )  # fmt: skip
    parser.add_argument(
        "--flush-age", type=float, default=float(_env("ROBOLAKE_WRITER_FLUSH_AGE", "60")),
        help="flush a partition when its oldest buffered record is this many seconds old, even "
        "if nothing new arrives (env ROBOLAKE_WRITER_FLUSH_AGE, default 60)",
    )  # fmt: skip
    parser.add_argument(
        "--max-buffer-bytes", type=parse_size,
        default=_env("ROBOLAKE_WRITER_MAX_BUFFER_BYTES", "512MiB"),
        help="cap on the data the process holds: buffered chunks plus flushes being encoded "
        "and uploaded; nearing it flushes the largest partition early "
        "(env ROBOLAKE_WRITER_MAX_BUFFER_BYTES, default 512MiB)",
    )  # fmt: skip
    parser.add_argument(
        "--dedup-window", type=float, default=float(_env("ROBOLAKE_WRITER_DEDUP_WINDOW", "3600")),
        help="seconds an indexed episode's chunk keys are kept to drop late retries "
        "(env ROBOLAKE_WRITER_DEDUP_WINDOW, default 3600)",
    )  # fmt: skip
    parser.add_argument(
        "--incomplete-after", type=float,
        default=float(_env("ROBOLAKE_WRITER_INCOMPLETE_AFTER", "3600")),
        help="index an episode as incomplete when nothing of it arrived for this many seconds "
        "(env ROBOLAKE_WRITER_INCOMPLETE_AFTER, default 3600)",
    )  # fmt: skip
    parser.add_argument(
        "--session-timeout", type=float,
        default=float(_env("ROBOLAKE_WRITER_SESSION_TIMEOUT", "30")),
        help="seconds after which the group gives a silent writer's partitions to the others "
        "(env ROBOLAKE_WRITER_SESSION_TIMEOUT, default 30)",
    )  # fmt: skip
    parser.add_argument(
        "--stored-bytes-interval", type=float,
        default=float(_env("ROBOLAKE_WRITER_STORED_BYTES_INTERVAL", "300")),
        help="seconds between listings of the bucket for the stored-bytes gauge, 0 = never "
        "(env ROBOLAKE_WRITER_STORED_BYTES_INTERVAL, default 300)",
    )  # fmt: skip
    parser.add_argument(
        "--metrics-host", default=_env("ROBOLAKE_WRITER_METRICS_HOST", d.metrics_host),
        help=f"address of /metrics (env ROBOLAKE_WRITER_METRICS_HOST, default {d.metrics_host})",
    )  # fmt: skip
    parser.add_argument(
        "--record",
        choices=RECORDS,
        default=_env("ROBOLAKE_WRITER_RECORD", d.record),
        help="system of record: 'tables' commits every flush to the Iceberg tables with its "
        "Kafka offsets (needs ROBOLAKE_CATALOG_URI), 'bucket' keeps the listing layout with "
        "Kafka offsets and bucket checkpoints, 'auto' picks tables when a catalog is "
        f"configured (env ROBOLAKE_WRITER_RECORD, default {d.record})",
    )
    parser.add_argument(
        "--commit-interval", type=float,
        default=float(_env("ROBOLAKE_WRITER_COMMIT_INTERVAL", str(d.commit_interval_s))),
        help="tables mode: stage a busy partition's flushes and commit them together, at most "
        "this many seconds after the first (one snapshot per table instead of one per flush); "
        "a partition that goes quiet commits at once; 0 = commit every flush "
        f"(env ROBOLAKE_WRITER_COMMIT_INTERVAL, default {d.commit_interval_s:g})",
    )  # fmt: skip
    parser.add_argument(
        "--committer",
        choices=COMMITTERS,
        default=_env("ROBOLAKE_WRITER_COMMITTER", d.committer),
        help="tables mode: 'process' = each writer commits its own partitions' flushes; "
        "'elected' = the writers of the group elect one (a Kafka group on the commit request "
        "topic) that commits everyone's, so several writers never conflict on a table "
        f"(env ROBOLAKE_WRITER_COMMITTER, default {d.committer})",
    )
    parser.add_argument(
        "--metrics-port", type=int, default=int(_env("ROBOLAKE_WRITER_METRICS_PORT", "9464")),
        help="port of /metrics, -1 = none (env ROBOLAKE_WRITER_METRICS_PORT, "
        "default 9464)",
    )  # fmt: skip
