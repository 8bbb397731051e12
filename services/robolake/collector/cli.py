"""``robolake collector`` (``robolake devices`` lives with the registry: ``devices/cli.py``)."""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
from typing import Any

from robolake.collector.errors import CollectorError
from robolake.collector.settings import ENV_TICKET_KEY, CollectorSettings, add_arguments
from robolake.collector.workers import MasterSpec, WorkerRole, check_port_free, exec_master

#: Flags a worker gets from its master rather than from the command line.
_MASTER_FLAGS = frozenset({"workers", "reuse_port"})


def add_parsers(subparsers: Any) -> None:
    """Register ``robolake collector``."""
    collector = subparsers.add_parser(
        "collector",
        help="run an HTTP collector that capture devices upload episodes to",
        description=(
            "Serve the upload API (schemas/openapi.yaml) and stream accepted records into Kafka "
            "with acks=all. Stateless: run as many replicas as needed behind a load balancer; "
            f"they must share {ENV_TICKET_KEY} and the device registry file. One replica uses "
            "every core it may run on: --workers processes share the port (see "
            "docs/operations.md, 'Collector workers'). Kafka and S3 come from the ROBOLAKE_* "
            "environment (see `robolake stack status --env`)."
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
    collector.set_defaults(func=functools.partial(_collector, collector))


def worker_argv(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The command a worker runs: this one (``python -m robolake``, the same global options and
    collector flags as parsed, so values from the environment are pinned too) with
    ``--workers 1 --reuse-port``."""
    argv = [sys.executable, "-m", "robolake"]
    argv += ["--log-level", args.log_level, "--log-format", args.log_format, "collector"]
    for action in parser._actions:
        if not action.option_strings or action.dest in _MASTER_FLAGS | {"help"}:
            continue
        value = getattr(args, action.dest, None)
        if value is None:
            continue
        flag = action.option_strings[0]
        if isinstance(action, argparse.BooleanOptionalAction):
            argv.append(flag if value else f"--no-{flag.removeprefix('--')}")
        elif action.nargs == 0:
            if value:
                argv.append(flag)
        else:
            argv += [flag, str(value)]
    return [*argv, "--workers", "1", "--reuse-port"]


def _collector(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    settings = CollectorSettings.from_args(args)
    role = WorkerRole.from_env()
    if role is None and settings.workers > 1:
        if not settings.reuse_port:  # --reuse-port: sharing with other collectors is intended
            check_port_free(settings.host, settings.port)
        exec_master(
            MasterSpec(
                workers=settings.workers,
                argv=worker_argv(parser, args),
                host=settings.host,
                port=settings.port,
                # A worker drains in-flight uploads, then closes the server (same bound), then
                # flushes its producer (each send bounded by send_timeout); then it is late.
                stop_grace=2 * settings.drain_seconds + settings.send_timeout + 15.0,
                log_level=args.log_level,
                log_format=args.log_format,
            )
        )
    if role is not None:
        role.bind_to_master()
    _serve(settings, role, args.event_loop)
    return 0


def _serve(settings: CollectorSettings, role: WorkerRole | None, event_loop: str) -> None:
    from robolake.collector.service import serve
    from robolake.endpoints import Endpoints

    endpoints = Endpoints.from_env()
    if event_loop == "uvloop":
        try:
            import uvloop
        except ImportError as exc:
            raise CollectorError("--event-loop uvloop needs `pip install uvloop`") from exc
        uvloop.run(serve(settings, endpoints, worker=role))
    else:
        asyncio.run(serve(settings, endpoints, worker=role))
