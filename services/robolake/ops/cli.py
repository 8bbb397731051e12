"""``robolake exporter``, ``robolake report contributions`` and ``robolake metrics catalog``."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
from pathlib import Path
from typing import Any, Final

from robolake.ops.metrics import DEFAULT_TARGET_BYTES

ENV_DEVICES_FILE: Final = "ROBOLAKE_DEVICES_FILE"
ENV_TARGET_BYTES: Final = "ROBOLAKE_TARGET_BYTES"
ENV_TARGET_DATE: Final = "ROBOLAKE_TARGET_DATE"

_UNITS: Final = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "pb": 10**15,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50,
}  # fmt: skip
_SIZE_RE: Final = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?(?:e[0-9]+)?)\s*([a-z]*)\s*$")


def parse_bytes(text: str) -> int:
    """``1PB`` (decimal), ``512TiB`` (binary), ``1e15`` -> bytes."""
    match = _SIZE_RE.match(text.lower())
    if match is None or match.group(2) not in _UNITS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 1PB, 800TB or 512TiB")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def parse_date(text: str) -> dt.date:
    """``YYYY-MM-DD``."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-01-31") from exc


def _devices_default() -> Path | None:
    value = os.environ.get(ENV_DEVICES_FILE)
    return Path(value) if value else None


def add_parsers(subparsers: Any) -> None:
    """Register ``exporter``, ``report`` and ``metrics``."""
    from robolake.ops.exporter import DEFAULT_TARGET_DATE, ExporterSettings

    d = ExporterSettings()
    exporter = subparsers.add_parser(
        "exporter",
        help="serve the dataset's size, progress and splits as Prometheus gauges",
        description=(
            "Scan the bucket named by the ROBOLAKE_* environment every --interval seconds (the "
            "episodes index and the shard listing) and serve what it holds on /metrics: stored "
            "bytes, episodes, recorded time and bytes by scene, capture point and organisation, "
            "and the target. The numbers come from S3, so they survive restarts. See "
            "docs/operations.md."
        ),
    )
    exporter.add_argument(
        "--port", type=int, default=int(os.environ.get("ROBOLAKE_EXPORTER_PORT") or d.port),
        help=f"port of /metrics (env ROBOLAKE_EXPORTER_PORT, default {d.port})",
    )  # fmt: skip
    exporter.add_argument(
        "--host", default=os.environ.get("ROBOLAKE_EXPORTER_HOST") or d.host,
        help=f"address of /metrics (env ROBOLAKE_EXPORTER_HOST, default {d.host})",
    )  # fmt: skip
    exporter.add_argument(
        "--interval", type=float,
        default=float(os.environ.get("ROBOLAKE_EXPORTER_INTERVAL") or d.interval_s),
        help=f"seconds between scans (env ROBOLAKE_EXPORTER_INTERVAL, default {d.interval_s:g})",
    )  # fmt: skip
    _add_devices_file(exporter)
    exporter.add_argument(
        "--target-bytes", type=parse_bytes,
        default=os.environ.get(ENV_TARGET_BYTES) or str(DEFAULT_TARGET_BYTES),
        help=f"the dataset's target size (env {ENV_TARGET_BYTES}, default 1PB)",
    )  # fmt: skip
    exporter.add_argument(
        "--target-date", type=parse_date,
        default=os.environ.get(ENV_TARGET_DATE) or DEFAULT_TARGET_DATE.isoformat(),
        help=f"when the target should be reached (env {ENV_TARGET_DATE}, "
        f"default {DEFAULT_TARGET_DATE})",
    )  # fmt: skip
    exporter.set_defaults(func=_exporter)

    report = subparsers.add_parser(
        "report", help="reports for operators (contributions per organisation)"
    )
    reports = report.add_subparsers(dest="report", metavar="REPORT", required=True)
    contributions = reports.add_parser(
        "contributions",
        help="episodes, hours and bytes per organisation and capture point",
        description=(
            "Per organisation and capture point: episodes, complete and flagged episodes (and "
            "their shares), hours recorded and shard bytes, for episodes recorded (started_at, "
            "UTC) from --since to --until, both days included. Counts the newest index row per "
            "episode; organisations come from the index (stamped at upload), the device "
            "registry only for rows written before that. See docs/operations.md."
        ),
    )
    contributions.add_argument("--since", type=parse_date, required=True, help="first day")
    contributions.add_argument("--until", type=parse_date, default=None, help="last day")
    contributions.add_argument(
        "--format", choices=["csv", "parquet", "table"], default="csv", help="default csv"
    )
    contributions.add_argument("--output", type=Path, default=None, help="file (default stdout)")
    _add_devices_file(contributions)
    contributions.set_defaults(func=_contributions)

    metrics = subparsers.add_parser("metrics", help="the metrics catalog")
    catalogs = metrics.add_subparsers(dest="metrics", metavar="ACTION", required=True)
    catalog = catalogs.add_parser(
        "catalog",
        help="render docs/metrics.md from the services' metric definitions",
        description="Every metric of every service: name, type, labels, meaning.",
    )
    catalog.add_argument("--output", type=Path, default=None, help="file (default stdout)")
    catalog.set_defaults(func=_catalog)


def _add_devices_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--devices-file", type=Path, default=_devices_default(),
        help=f"device registry (env {ENV_DEVICES_FILE}), only for the organisation of index rows "
        "written before the index carried it; without it those count as 'unknown'",
    )  # fmt: skip


def _exporter(args: argparse.Namespace) -> int:
    import asyncio

    from robolake.endpoints import Endpoints
    from robolake.ops.exporter import ExporterSettings, serve

    settings = ExporterSettings(
        interval_s=args.interval,
        devices_file=args.devices_file,
        target_bytes=args.target_bytes,
        target_date=args.target_date,
        host=args.host,
        port=args.port,
    )
    asyncio.run(serve(settings, Endpoints.from_env()))
    return 0


def _contributions(args: argparse.Namespace) -> int:
    from robolake.endpoints import Endpoints
    from robolake.ops.contributions import Period, contributions, write_report

    period = Period(args.since, args.until)
    table = contributions(Endpoints.from_env(), period, args.devices_file)
    write_report(table, args.format, args.output, sys.stdout)
    return 0


def _catalog(args: argparse.Namespace) -> int:
    from robolake.ops.catalog import render

    text = render()
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
    return 0
