"""``robolake collector`` (``robolake devices`` lives with the registry: ``devices/cli.py``)."""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from robolake.collector.errors import CollectorError
from robolake.collector.settings import ENV_TICKET_KEY, add_arguments


def add_parsers(subparsers: Any) -> None:
    """Register ``robolake collector``."""
    collector = subparsers.add_parser(
        "collector",
        help="run an HTTP collector that capture devices upload episodes to",
        description=(
            "Serve the upload API (schemas/openapi.yaml) and stream accepted records into Kafka "
            "with acks=all. Stateless: run as many replicas as needed behind a load balancer; "
            f"they must share {ENV_TICKET_KEY} and the device registry file. Kafka and S3 "
            "come from the ROBOLAKE_* environment (see `robolake stack status --env`)."
        ),
    )
    add_arguments(collector)
    collector.add_argument(
        "--event-loop",
        choices=["asyncio", "uvloop"],
        default=os.environ.get("ROBOLAKE_COLLECTOR_EVENT_LOOP", "uvloop"),
        help="event loop implementation (env ROBOLAKE_COLLECTOR_EVENT_LOOP, default uvloop: "
        "+20%% acknowledged MB/s in `make bench`, which measures both)",
    )
    collector.set_defaults(func=_collector)


def _collector(args: argparse.Namespace) -> int:
    from robolake.collector.service import serve
    from robolake.collector.settings import CollectorSettings
    from robolake.endpoints import Endpoints

    settings = CollectorSettings.from_args(args)
    endpoints = Endpoints.from_env()
    if args.event_loop == "uvloop":
        try:
            import uvloop
        except ImportError as exc:
            raise CollectorError("--event-loop uvloop needs `pip install uvloop`") from exc
        uvloop.run(serve(settings, endpoints))
    else:
        asyncio.run(serve(settings, endpoints))
    return 0
