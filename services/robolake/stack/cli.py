"""``robolake stack up|down|status``: the local Kafka, MinIO, Prometheus and Iceberg catalog."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from robolake.stack import catalog
from robolake.stack.paths import cache_dir, default_state_dir
from robolake.stack.stack import DEFAULT_TIMEOUT, Stack

_EPILOG = """\
examples:
  robolake stack up                      start (installing on first use) and print endpoints
  eval "$(robolake stack status --env)"  load ROBOLAKE_* variables into your shell
  robolake stack down                    stop every process the stack started

environment:
  ROBOLAKE_STATE_DIR  stack data, configs, logs (default ~/.local/state/robolake/stack)
  ROBOLAKE_CACHE_DIR  Kafka and Iceberg jars, MinIO, Prometheus (default ~/.cache/robolake)
"""


def add_parser(subparsers: Any) -> None:
    """Register ``robolake stack`` and its subcommands."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "stack",
        help="run Kafka, MinIO, Prometheus and an Iceberg catalog on loopback (no Docker)",
        description=(
            "Run real Apache Kafka (KRaft), MinIO, Prometheus and Apache Iceberg's REST catalog "
            "on free loopback ports, installed once into a cache from Maven, the Go module proxy "
            "and Debian's packages."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help=f"where the stack keeps data, configuration and logs (default: {default_state_dir()})",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    up = actions.add_parser("up", help="install if needed, start, wait until ready")
    up.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="readiness timeout, s")
    up.add_argument("--env", action="store_true", help="print only `export` lines for the shell")
    up.set_defaults(func=_up)

    install = actions.add_parser(
        "install",
        help="install Kafka, MinIO, Prometheus and the Iceberg catalog into the cache (once)",
    )
    install.set_defaults(func=_install)

    down = actions.add_parser("down", help="stop every process the stack started")
    down.set_defaults(func=_down)

    status = actions.add_parser("status", help="show components, PIDs, endpoints, logs")
    status.add_argument("--env", action="store_true", help="print only `export` lines")
    status.set_defaults(func=_status)


def _stack(args: argparse.Namespace) -> Stack:
    return Stack(args.state_dir or default_state_dir())


def _print_env(stack: Stack) -> None:
    for name, value in stack.service_env().items():
        print(f"export {name}={shlex.quote(value)}")


def _print_status(stack: Stack) -> bool:
    all_running = True
    print(f"state: {stack.state_dir}   cache: {cache_dir()}")
    for status in stack.status():
        all_running &= status.running
        state = f"running (pid {status.pid})" if status.running else "stopped"
        print(
            f"  {status.name:<11} {state:<22} {status.endpoint or '-':<24} {status.version or ''}"
        )
        if status.log_path:
            print(f"  {'':<11} log: {status.log_path}")
    return all_running


def _up(args: argparse.Namespace) -> int:
    stack = _stack(args)
    began = time.monotonic()

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - began:5.1f}s] {message}", file=sys.stderr)

    endpoints = stack.up(timeout=args.timeout, progress=progress)
    if args.env:
        _print_env(stack)
        return 0
    print(f"stack ready in {time.monotonic() - began:.1f} s")
    _print_status(stack)
    print(f"  kafka bootstrap   {endpoints.kafka_bootstrap}")
    print(f"  S3 endpoint       {endpoints.s3_endpoint}  bucket {endpoints.s3_bucket}")
    print(f"  Prometheus        {endpoints.prometheus_url}")
    warehouse = catalog.warehouse(endpoints.s3_bucket)
    print(f"  Iceberg catalog   {endpoints.catalog_uri}  (REST, warehouse {warehouse})")
    print('load the environment with: eval "$(robolake stack status --env)"')
    return 0


def _install(args: argparse.Namespace) -> int:
    began = time.monotonic()
    _stack(args).install(
        progress=lambda message: print(
            f"[{time.monotonic() - began:5.1f}s] {message}", file=sys.stderr
        )
    )
    print(f"stack installed in {cache_dir()} ({time.monotonic() - began:.1f} s)")
    return 0


def _down(args: argparse.Namespace) -> int:
    stack = _stack(args)
    stopped = stack.down(progress=lambda message: print(message, file=sys.stderr))
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def _status(args: argparse.Namespace) -> int:
    stack = _stack(args)
    if args.env:
        _print_env(stack)
        return 0
    return 0 if _print_status(stack) else 3
