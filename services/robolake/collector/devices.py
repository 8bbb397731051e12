"""Device identities: one bearer token per device, bound to its device and capture point.

Tokens look like ``rlk_<token_id>_<secret>``. Only ``sha256(secret)`` is stored, keyed by the
public ``token_id``, so the registry file leaks nothing usable and lookups compare a digest with
:func:`hmac.compare_digest` (constant time) instead of comparing the token itself.

The registry is one JSON file (``$ROBOLAKE_DEVICES_FILE``) shared by every collector replica
(a mounted secret in production). Replicas re-read it when its modification time or size
changes, checked on every request, so a revocation takes effect at once without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from robolake.collector.errors import CollectorError

TOKEN_PREFIX: Final = "rlk"
_TOKEN_RE: Final = re.compile(r"^rlk_([0-9a-f]{16})_([A-Za-z0-9_-]{32,128})$")
_ID_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


class DeviceRegistryError(CollectorError):
    """The registry file is unreadable, or a management command is invalid."""


@dataclass(frozen=True)
class Device:
    """An enrolled device, as stored (never the token itself)."""

    token_id: str
    device_id: str
    capture_point_id: str
    organisation: str
    secret_sha256: str
    created_at: float
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class Identity:
    """Who an authenticated request comes from."""

    device_id: str
    capture_point_id: str
    organisation: str


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def validate_identifier(kind: str, value: str) -> str:
    """Device, capture point and organisation ids: short, printable, header-safe."""
    if not _ID_RE.match(value):
        raise DeviceRegistryError(
            f"invalid {kind} {value!r}: use 1-128 characters of letters, digits and . _ : -"
        )
    return value


class DeviceRegistry:
    """The device registry file: management (add, revoke, list) and authentication."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._devices: dict[str, Device] = {}

    # -- reading ---------------------------------------------------------------------------
    def _current_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _refresh(self) -> None:
        stamp = self._current_stamp()
        if stamp == self._stamp:
            return
        devices: dict[str, Device] = {}
        if stamp is not None:
            try:
                raw: dict[str, Any] = json.loads(self.path.read_text())
                for entry in raw.get("devices", []):
                    device = Device(**entry)
                    devices[device.token_id] = device
            except (OSError, ValueError, TypeError) as exc:
                raise DeviceRegistryError(f"unreadable device registry {self.path}: {exc}") from exc
        self._devices = devices
        self._stamp = stamp

    def devices(self) -> Iterator[Device]:
        """Every device in the registry, revoked ones included."""
        with self._lock:
            self._refresh()
            yield from sorted(
                self._devices.values(), key=lambda d: (d.capture_point_id, d.device_id)
            )

    def authenticate(self, token: str) -> Identity | None:
        """The identity a bearer token stands for, or None if it is unknown or revoked."""
        match = _TOKEN_RE.match(token)
        if match is None:
            return None
        token_id, secret = match.groups()
        with self._lock:
            self._refresh()
            device = self._devices.get(token_id)
        # Compare digests in constant time; compute the digest even for unknown ids.
        expected = device.secret_sha256 if device is not None else "0" * 64
        ok = hmac.compare_digest(_digest(secret), expected)
        if device is None or not ok or not device.active:
            return None
        return Identity(device.device_id, device.capture_point_id, device.organisation)

    # -- management ------------------------------------------------------------------------
    def _write(self, devices: dict[str, Device]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + f".tmp{os.getpid()}")
        payload = {"version": 1, "devices": [asdict(d) for d in devices.values()]}
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def add(self, device_id: str, capture_point_id: str, organisation: str) -> str:
        """Enrol a device and return its token: shown once, never stored."""
        return self.add_many([(device_id, capture_point_id, organisation)])[device_id]

    def add_many(
        self, entries: Iterable[tuple[str, str, str]], *, replace: bool = False
    ) -> dict[str, str]:
        """Enrol many devices in one write: ``(device_id, capture_point_id, organisation)``.

        Returns device id → token. With ``replace``, active tokens of those devices are revoked
        first (the simulator re-enrols its devices on every run); otherwise they are an error.
        """
        wanted = list(entries)
        for device_id, capture_point_id, organisation in wanted:
            validate_identifier("device_id", device_id)
            validate_identifier("capture_point_id", capture_point_id)
            validate_identifier("organisation", organisation)
        ids = {device_id for device_id, _, _ in wanted}
        tokens: dict[str, str] = {}
        with self._lock:
            self._stamp = None
            self._refresh()
            devices = dict(self._devices)
            now = time.time()
            for token_id, existing in list(devices.items()):
                if existing.device_id in ids and existing.active:
                    if not replace:
                        raise DeviceRegistryError(
                            f"device {existing.device_id!r} already has an active token "
                            f"({existing.token_id}); revoke it first"
                        )
                    devices[token_id] = Device(**{**asdict(existing), "revoked_at": now})
            for device_id, capture_point_id, organisation in wanted:
                token_id = secrets.token_hex(8)
                secret = secrets.token_urlsafe(32)
                devices[token_id] = Device(
                    token_id=token_id,
                    device_id=device_id,
                    capture_point_id=capture_point_id,
                    organisation=organisation,
                    secret_sha256=_digest(secret),
                    created_at=now,
                )
                tokens[device_id] = f"{TOKEN_PREFIX}_{token_id}_{secret}"
            self._write(devices)
            self._stamp = None
        return tokens

    def revoke(self, device_id: str) -> list[str]:
        """Revoke every active token of a device; return the revoked token ids."""
        with self._lock:
            self._stamp = None
            self._refresh()
            now = time.time()
            devices = dict(self._devices)
            revoked = []
            for token_id, device in devices.items():
                if device.device_id == device_id and device.active:
                    devices[token_id] = Device(**{**asdict(device), "revoked_at": now})
                    revoked.append(token_id)
            if not revoked:
                raise DeviceRegistryError(f"device {device_id!r} has no active token")
            self._write(devices)
            self._stamp = None
        return revoked
