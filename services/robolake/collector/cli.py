"""``robolake collector`` and ``robolake devices``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from robolake.collector.devices import DeviceRegistry
from robolake.collector.errors import CollectorError
from robolake.collector.settings import (
    ENV_DEVICES_FILE,
    ENV_TICKET_KEY,
    add_arguments,
    default_devices_file,
)


def add_parsers(subparsers: Any) -> None:
    """Register ``robolake collector`` and ``robolake devices``."""
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

    devices = subparsers.add_parser(
        "devices",
        help="enrol, revoke and list capture devices (bearer tokens)",
        description="Manage the device registry: one bearer token per device, stored hashed.",
    )
    devices.add_argument(
        "--devices-file",
        type=Path,
        default=None,
        help=f"registry file (env {ENV_DEVICES_FILE}, default {default_devices_file()})",
    )
    actions = devices.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="enrol a device; prints its token once")
    add.add_argument("device_id")
    add.add_argument("--capture-point", required=True, help="capture point the device belongs to")
    add.add_argument("--organisation", required=True, help="organisation running the point")
    add.set_defaults(func=_devices_add)
    revoke = actions.add_parser("revoke", help="revoke a device's token at once")
    revoke.add_argument("device_id")
    revoke.set_defaults(func=_devices_revoke)
    listing = actions.add_parser("list", help="list devices (never tokens)")
    listing.set_defaults(func=_devices_list)


def _registry(args: argparse.Namespace) -> DeviceRegistry:
    return DeviceRegistry(args.devices_file or default_devices_file())


def _devices_add(args: argparse.Namespace) -> int:
    token = _registry(args).add(args.device_id, args.capture_point, args.organisation)
    print(token)
    print("store this token on the device now; it is not shown again", file=sys.stderr)
    return 0


def _devices_revoke(args: argparse.Namespace) -> int:
    revoked = _registry(args).revoke(args.device_id)
    print(f"revoked {args.device_id} (token ids {', '.join(revoked)})")
    return 0


def _devices_list(args: argparse.Namespace) -> int:
    print(f"{'device':<24} {'capture point':<20} {'organisation':<16} {'token id':<17} state")
    for device in _registry(args).devices():
        state = "active" if device.active else "revoked"
        print(
            f"{device.device_id:<24} {device.capture_point_id:<20} {device.organisation:<16} "
            f"{device.token_id:<17} {state}"
        )
    return 0


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
