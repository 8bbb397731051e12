"""The ``robolake`` command: one entry point, a subcommand per job.

Each subpackage contributes its subcommands through an ``add_parser(subparsers)`` function, so this
module stays a thin router.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from robolake import __version__, logs
from robolake.errors import RobolakeError


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used to render ``--help``)."""
    from robolake import demo
    from robolake.capture import cli as capture_cli
    from robolake.collector import cli as collector_cli
    from robolake.dataset import cli as dataset_cli
    from robolake.devices import cli as devices_cli
    from robolake.lake import cli as lake_cli
    from robolake.ops import cli as ops_cli
    from robolake.stack import cli as stack_cli
    from robolake.writer import cli as writer_cli

    parser = argparse.ArgumentParser(
        prog="robolake",
        description=(
            "Ingestion backend for real-world robot data: capture devices upload episodes to "
            "collectors, which stream them through Kafka to writers that store Parquet shards "
            "on S3-compatible storage."
        ),
    )
    parser.add_argument("--version", action="version", version=f"robolake {__version__}")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging verbosity (default: INFO)",
    )
    parser.add_argument(
        "--log-format",
        default=os.environ.get(logs.ENV_LOG_FORMAT) or "text",
        choices=logs.LOG_FORMATS,
        help="text: one line per record, control and bidi characters escaped; json: one JSON "
        f"object per line (env {logs.ENV_LOG_FORMAT}, default text)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    stack_cli.add_parser(subparsers)
    collector_cli.add_parsers(subparsers)
    devices_cli.add_parsers(subparsers)
    capture_cli.add_parsers(subparsers)
    demo.add_parser(subparsers)
    writer_cli.add_parsers(subparsers)
    dataset_cli.add_parsers(subparsers)
    ops_cli.add_parsers(subparsers)
    lake_cli.add_parsers(subparsers)
    init = subparsers.add_parser(
        "init",
        help="create robolake's Kafka topics, S3 bucket and Iceberg tables (idempotent)",
        description="Create the chunk and dead-letter topics (sized for the largest chunk), the "
        "dataset bucket and -- when ROBOLAKE_CATALOG_URI names a catalog -- the namespace and "
        "every table (one per stream type version, and the episodes index), evolving existing "
        "tables to the contract's columns, on the cluster named by the ROBOLAKE_* variables.",
    )
    init.add_argument("--partitions", type=int, default=None, help="partitions of the chunk topic")
    init.set_defaults(func=_init)
    migrate = subparsers.add_parser(
        "migrate",
        help="register the bucket layout's shard and index objects into the Iceberg tables",
        description="Rewrite every object under shards/ and index/episodes/ of ROBOLAKE_S3_BUCKET "
        "into its table's file schema (field ids, date column, microsecond times) and commit them, "
        "one append per table, carrying the writer's recorded offsets forward. Idempotent: files "
        "already migrated are skipped. The source objects are left in place.",
    )
    migrate.add_argument(
        "--dry-run", action="store_true", help="print what would be migrated; change nothing"
    )
    migrate.set_defaults(func=_migrate)
    return parser


def _migrate(args: argparse.Namespace) -> int:
    from robolake.endpoints import Endpoints
    from robolake.lake.migrate import migrate

    endpoints = Endpoints.from_env()
    report = migrate(endpoints, dry_run=args.dry_run, progress=lambda line: print(f"  {line}"))
    print(report.render(args.dry_run))
    return 0


def _init(args: argparse.Namespace) -> int:
    import asyncio

    from robolake.endpoints import Endpoints
    from robolake.episode.topics import DEFAULT_CHUNK_PARTITIONS
    from robolake.provision import provision

    endpoints = Endpoints.from_env()
    asyncio.run(provision(endpoints, partitions=args.partitions or DEFAULT_CHUNK_PARTITIONS))
    print(f"topics and bucket {endpoints.s3_bucket!r} ready on {endpoints.kafka_bootstrap}")
    if endpoints.catalog_uri:
        from robolake.episode.stream_types import default_registry
        from robolake.lake.catalog import LakeTables

        infos = LakeTables.from_endpoints(endpoints).ensure_all(default_registry())
        print(
            f"{len(infos)} tables ready in namespace {endpoints.catalog_namespace!r} of "
            f"{endpoints.catalog_uri}: {', '.join(i.name for i in infos)}"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; errors robolake raises on purpose print one line and exit 1."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.log_format not in logs.LOG_FORMATS:  # argparse checks flags, not defaults
        parser.error(f"{logs.ENV_LOG_FORMAT} must be one of {', '.join(logs.LOG_FORMATS)}")
    logs.configure(args.log_level, args.log_format)
    try:
        code: int = args.func(args)
    except RobolakeError as exc:
        # Error messages quote names and values from files, brokers and devices.
        print(f"robolake: error: {logs.escape(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
