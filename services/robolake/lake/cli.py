"""``robolake tables``, ``compact``, ``expire-snapshots`` and ``remove-orphans``: the Iceberg
tables of the deployment, and their maintenance (``docs/maintenance.md``)."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from typing import Any

MIB = 1024 * 1024


def add_parsers(subparsers: Any) -> None:
    tables = subparsers.add_parser(
        "tables",
        help="list the dataset's Iceberg tables: snapshot, files, rows, bytes",
        description="Every table in ROBOLAKE_CATALOG_NAMESPACE (default robolake) of the catalog "
        "at ROBOLAKE_CATALOG_URI, read from each current snapshot's summary (no listing).",
    )
    tables.add_argument("--json", action="store_true", help="one JSON object per table")
    tables.set_defaults(func=_tables)

    compact = subparsers.add_parser(
        "compact",
        help="rewrite the small files of closed partitions into files near the target size",
        description="Rewrite the small data files of every closed partition (a date older than "
        "the grace, whose newest file is older than --min-age) of the tables into files near "
        "--target-file-size compressed bytes, sorted, one atomic snapshot per partition that "
        "carries the writer's offsets forward. Once by default; with --interval a service that "
        "runs a cycle every INTERVAL seconds until SIGTERM/SIGINT and serves /metrics, also "
        "expiring snapshots (--expire) and removing orphans (--remove-orphans) if asked.",
    )
    _table_flag(compact)
    compact.add_argument(
        "--target-file-size", type=_size, default=None, metavar="SIZE",
        help="compressed size of a compacted file (default 512MiB, lake/schema.py)",
    )  # fmt: skip
    compact.add_argument(
        "--min-file-size", type=_size, default=None, metavar="SIZE",
        help="files at least this big are left alone (default: 3/4 of the target)",
    )  # fmt: skip
    compact.add_argument(
        "--min-input-files", type=int, default=2,
        help="rewrite a partition only if it has at least this many small files (default 2)",
    )  # fmt: skip
    compact.add_argument(
        "--grace-days", type=int, default=1,
        help="the newest N UTC dates are open and left alone (default 1: today; 0: none)",
    )  # fmt: skip
    compact.add_argument(
        "--min-age", type=float, default=None, metavar="SECONDS",
        help="a partition with a file committed less than SECONDS ago is open (default 3600)",
    )  # fmt: skip
    compact.add_argument(
        "--interval", type=float, default=None, metavar="SECONDS",
        help="run as a service: a cycle every SECONDS until SIGTERM/SIGINT",
    )  # fmt: skip
    compact.add_argument("--metrics-host", default="0.0.0.0", help="/metrics address")  # noqa: S104
    compact.add_argument(
        "--metrics-port", type=int, default=None,
        help="/metrics port in service mode (default 9466; -1: none); one-shot runs serve none",
    )  # fmt: skip
    compact.add_argument(
        "--expire", action="store_true",
        help="after compacting, expire snapshots older than --snapshot-retention",
    )  # fmt: skip
    compact.add_argument(
        "--remove-orphans", action="store_true",
        help="after expiry, remove orphans older than --orphan-retention",
    )  # fmt: skip
    _expiry_flags(compact, "--snapshot-retention")
    _orphan_flags(compact, "--orphan-retention")
    compact.set_defaults(func=_compact)

    expire = subparsers.add_parser(
        "expire-snapshots",
        help="drop snapshots older than a retention from the tables' metadata",
        description="Expire snapshots older than --older-than seconds, always keeping the "
        "current snapshot, the newest --retain-last of its ancestry and the newest one carrying "
        "the writer's robolake.* offsets. Removes metadata only; remove-orphans then deletes "
        "the files no retained snapshot needs.",
    )
    _table_flag(expire)
    _expiry_flags(expire, "--older-than")
    expire.set_defaults(func=_expire)

    orphans = subparsers.add_parser(
        "remove-orphans",
        help="delete files under the tables' locations that no retained snapshot references",
        description="Delete objects under each table's location (data/ and metadata/) that no "
        "retained snapshot references, and table-mode writer checkpoints no retained index "
        "snapshot names, once older than --older-than seconds (default 3 days: longer than any "
        "flush or commit in flight).",
    )
    _table_flag(orphans)
    _orphan_flags(orphans, "--older-than")
    orphans.add_argument(
        "--dry-run", action="store_true", help="list what would be deleted, delete nothing"
    )
    orphans.add_argument(
        "--keep-checkpoints", action="store_true", help="leave writer checkpoints alone"
    )
    orphans.set_defaults(func=_orphans)


def _table_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--table", action="append", default=None, metavar="NAME",
        help="only this table (repeatable; default: every table of the namespace)",
    )  # fmt: skip


def _expiry_flags(parser: argparse.ArgumentParser, flag: str) -> None:
    parser.add_argument(
        flag, dest="snapshot_retention", type=float, default=None, metavar="SECONDS",
        help="expire snapshots older than this (default 432000: 5 days, Iceberg's default)",
    )  # fmt: skip
    parser.add_argument(
        "--retain-last", type=int, default=1,
        help="always keep the newest N snapshots of the current ancestry (default 1)",
    )  # fmt: skip


def _orphan_flags(parser: argparse.ArgumentParser, flag: str) -> None:
    parser.add_argument(
        flag, dest="orphan_retention", type=float, default=None, metavar="SECONDS",
        help="remove only orphans older than this (default 259200: 3 days)",
    )  # fmt: skip


def _size(text: str) -> int:
    units = {"k": 1024, "m": MIB, "g": 1024 * MIB}
    value = text.strip().lower().removesuffix("ib").removesuffix("b")
    try:
        if value and value[-1] in units:
            return int(float(value[:-1]) * units[value[-1]])
        return int(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 512MiB") from exc


def _tables(args: argparse.Namespace) -> int:
    from robolake.endpoints import Endpoints
    from robolake.lake.catalog import LakeTables
    from robolake.lake.status import render, status

    endpoints = Endpoints.from_env()
    rows = status(LakeTables.from_endpoints(endpoints))
    if args.json:
        for row in rows:
            print(json.dumps({**asdict(row), "average_file_bytes": row.average_file_bytes}))
    else:
        print(f"namespace {endpoints.catalog_namespace} at {endpoints.catalog_uri}")
        print(render(rows))
    return 0


def _compact(args: argparse.Namespace) -> int:
    import asyncio

    from robolake.endpoints import Endpoints
    from robolake.lake import maintenance as m
    from robolake.lake.errors import LakeError
    from robolake.lake.schema import TARGET_FILE_BYTES

    compaction = m.CompactionSettings(
        target_file_bytes=args.target_file_size or TARGET_FILE_BYTES,
        min_file_bytes=args.min_file_size,
        min_input_files=args.min_input_files,
        grace_days=args.grace_days,
        min_age_s=m.DEFAULT_MIN_AGE_S if args.min_age is None else args.min_age,
        pause_s=float(os.environ.get(m.ENV_COMPACT_PAUSE) or 0.0),
    )
    cycle = m.Cycle(
        compaction,
        names=tuple(args.table) if args.table else None,
        expire_after_s=_or(args.snapshot_retention, m.DEFAULT_SNAPSHOT_RETENTION_S)
        if args.expire
        else None,
        retain_last=args.retain_last,
        orphans_after_s=_or(args.orphan_retention, m.DEFAULT_ORPHAN_RETENTION_S)
        if args.remove_orphans
        else None,
    )
    maintenance = m.Maintenance.from_endpoints(Endpoints.from_env())
    if args.interval is None:
        names = list(cycle.names) if cycle.names else None
        results = maintenance.compact(compaction, names)
        print(m.summarize(results))
        if cycle.expire_after_s is not None:
            removed = maintenance.expire(cycle.expire_after_s, retain_last=cycle.retain_last,
                                         names=names)  # fmt: skip
            print(f"expired {sum(removed.values())} snapshots")
        if cycle.orphans_after_s is not None:
            report = maintenance.remove_orphans(cycle.orphans_after_s, names=names)
            print(f"removed {len(report.removed)} orphans ({report.bytes} bytes)")
        failed = maintenance.errors or any(r.outcome == "failed" for r in results)
        return 1 if failed else 0
    if args.interval <= 0:
        raise LakeError("--interval must be positive seconds")
    port = m.DEFAULT_METRICS_PORT if args.metrics_port is None else args.metrics_port
    asyncio.run(
        m.serve(
            maintenance,
            cycle,
            interval_s=args.interval,
            metrics_host=args.metrics_host,
            metrics_port=None if port < 0 else port,
        )
    )
    return 0


def _expire(args: argparse.Namespace) -> int:
    from robolake.endpoints import Endpoints
    from robolake.lake import maintenance as m

    maintenance = m.Maintenance.from_endpoints(Endpoints.from_env())
    removed = maintenance.expire(
        _or(args.snapshot_retention, m.DEFAULT_SNAPSHOT_RETENTION_S),
        retain_last=args.retain_last,
        names=args.table,
    )
    for name, count in sorted(removed.items()):
        print(f"{name}: expired {count} snapshots")
    return 1 if maintenance.errors else 0


def _orphans(args: argparse.Namespace) -> int:
    from robolake.endpoints import Endpoints
    from robolake.lake import maintenance as m

    maintenance = m.Maintenance.from_endpoints(Endpoints.from_env())
    report = maintenance.remove_orphans(
        _or(args.orphan_retention, m.DEFAULT_ORPHAN_RETENTION_S),
        names=args.table,
        checkpoints=not args.keep_checkpoints,
        dry_run=args.dry_run,
    )
    verb = "would remove" if report.dry_run else "removed"
    for key in report.removed:
        print(f"{verb} {key}")
    print(f"{verb} {len(report.removed)} orphans ({report.bytes} bytes); kept {report.kept}")
    return 1 if maintenance.errors else 0


def _or(value: float | None, default: float) -> float:
    return default if value is None else value
