"""``robolake devices``: enrol, import, revoke, list and compact the device registry."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from robolake.devices.enrolment import check_not_enrolled, parse_enrolment
from robolake.devices.errors import DeviceRegistryError
from robolake.devices.registry import ENV_DEVICES_FILE, DeviceRegistry, default_devices_file


def add_parsers(subparsers: Any) -> None:
    """Register ``robolake devices``."""
    devices = subparsers.add_parser(
        "devices",
        help="enrol, import, revoke, list capture devices (bearer tokens); compact the registry",
        description=(
            "Manage the device registry: one bearer token per device, stored hashed (sha256 of "
            "the secret; tokens are printed once and never stored). The registry is an "
            "append-only journal: an add, an import or a revocation appends lines under a file "
            "lock with one fsync, whatever the size of the registry, and every collector "
            "sharing the file sees the change on its next request."
        ),
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
    importing = actions.add_parser(
        "import",
        help="enrol many devices from a CSV or JSON file in one write; prints their tokens once",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Enrol every device of FILE in one locked write with one fsync.\n\n"
            "FILE is CSV with a header line naming the columns device_id,capture_point_id,"
            "organisation\n(any order), or a JSON array of objects with exactly those keys. "
            "The format comes from the\nextension (.csv, .json), else from the content. "
            "'-' reads standard input.\n\n"
            "The whole file is checked first: if any row has an invalid id, repeats a "
            "device_id, or names\na device that already has an active token, nothing is "
            "enrolled and the error lists every\nsuch line (CSV) or item (JSON, counted from "
            "1).\n\n"
            "The new tokens are written once, as CSV device_id,token, to standard output or to "
            "--tokens-out;\nthey are not stored and cannot be shown again."
        ),
        epilog=(
            "example:\n"
            "  $ cat devices.csv\n"
            "  device_id,capture_point_id,organisation\n"
            "  robot-17,cp-0042,acme\n"
            "  robot-18,cp-0042,acme\n"
            "  $ robolake devices import devices.csv --tokens-out tokens.csv\n"
            "  enrolled 2 devices; their tokens are in tokens.csv (mode 0600), shown only once"
        ),
    )
    importing.add_argument("file", metavar="FILE", help="CSV or JSON file of devices, or '-'")
    importing.add_argument(
        "--format",
        choices=["auto", "csv", "json"],
        default="auto",
        help="file format (default auto: by extension, else by content)",
    )
    importing.add_argument(
        "--tokens-out",
        type=Path,
        metavar="PATH",
        default=None,
        help="write the tokens (CSV device_id,token) to this new file, created with mode 0600, "
        "instead of standard output; an existing file is never overwritten",
    )
    importing.add_argument(
        "--dry-run", action="store_true", help="check the file against the registry, enrol nothing"
    )
    importing.set_defaults(func=_devices_import)
    revoke = actions.add_parser("revoke", help="revoke a device's token at once")
    revoke.add_argument("device_id")
    revoke.set_defaults(func=_devices_revoke)
    listing = actions.add_parser("list", help="list devices (never tokens)")
    listing.set_defaults(func=_devices_list)
    compact = actions.add_parser(
        "compact",
        help="rewrite the registry with revocations folded in (atomic; rarely needed)",
        description=(
            "Rewrite the registry file with one line per token, revocations folded in: written "
            "to a temporary file, fsynced and renamed over the registry, so collectors switch "
            "to it atomically. Rarely needed: every token adds at most two lines (its "
            "enrolment and its revocation), so the journal stays within about 1.3 times its "
            "compacted size. Also converts a registry in the old single-document format."
        ),
    )
    compact.set_defaults(func=_devices_compact)


def _registry(args: argparse.Namespace) -> DeviceRegistry:
    return DeviceRegistry(args.devices_file or default_devices_file())


def _devices_add(args: argparse.Namespace) -> int:
    token = _registry(args).add(args.device_id, args.capture_point, args.organisation)
    print(token)
    print("store this token on the device now; it is not shown again", file=sys.stderr)
    return 0


def _devices_import(args: argparse.Namespace) -> int:
    name = "standard input" if args.file == "-" else args.file
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DeviceRegistryError(f"cannot read {name}: {exc}") from exc
    rows = parse_enrolment(name, text, None if args.format == "auto" else args.format)
    registry = _registry(args)
    check_not_enrolled(name, rows, {d.device_id for d in registry.devices() if d.active})
    if args.dry_run:
        print(f"{name}: {len(rows)} devices, all valid and not enrolled yet; nothing enrolled")
        return 0
    out = _open_tokens_out(args.tokens_out) if args.tokens_out else None
    try:
        tokens = registry.add_many(row.entry for row in rows)
    except BaseException:
        if out is not None:
            out.close()
            args.tokens_out.unlink()
        raise
    lines = "device_id,token\n" + "".join(
        f"{row.device_id},{tokens[row.device_id]}\n" for row in rows
    )
    if out is None:
        sys.stdout.write(lines)
        sys.stdout.flush()
        print(
            f"enrolled {len(rows)} devices; store these tokens now, they are not shown again",
            file=sys.stderr,
        )
        return 0
    try:
        with out:
            out.write(lines)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        raise DeviceRegistryError(
            f"enrolled {len(rows)} devices but could not write their tokens to "
            f"{args.tokens_out}: {exc}; revoke them and import the file again"
        ) from exc
    print(
        f"enrolled {len(rows)} devices; their tokens are in {args.tokens_out} (mode 0600), "
        "shown only once",
        file=sys.stderr,
    )
    return 0


def _open_tokens_out(path: Path) -> TextIO:
    """Created before enrolling, so a bad path costs nothing; never overwrites older tokens."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise DeviceRegistryError(
            f"{path} exists; tokens are shown only once, so it is never overwritten"
        ) from exc
    except OSError as exc:
        raise DeviceRegistryError(f"cannot create {path}: {exc}") from exc
    return os.fdopen(fd, "w", encoding="utf-8", newline="")


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


def _devices_compact(args: argparse.Namespace) -> int:
    registry = _registry(args)
    done = registry.compact()
    print(
        f"compacted {registry.path}: {done.lines_before} lines -> {done.tokens} tokens, "
        f"{done.bytes_before} -> {done.bytes_after} bytes"
    )
    return 0
