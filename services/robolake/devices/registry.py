"""Device identities: one bearer token per device, bound to its device and capture point.

Tokens look like ``rlk_<token_id>_<secret>``. Only ``sha256(secret)`` is stored, keyed by the
public ``token_id``, so the registry file leaks nothing usable and lookups compare a digest with
:func:`hmac.compare_digest` (constant time) instead of comparing the token itself.

The registry is one file (``$ROBOLAKE_DEVICES_FILE``) shared by every collector replica.
Replicas stat it on every request, so a revocation takes effect at once without a restart.

The file is an append-only journal of JSON lines, whose first line is a header::

    {"format":"robolake-devices","generation":"9c1e…","version":2}
    {"device":{"capture_point_id":"cp-7","device_id":"robot-1",…,"token_id":"…"},"op":"add"}
    {"op":"revoke","revoked_at":1767225600.0,"token_id":"…"}

Why this layout, and not the single JSON document that came before it: rewriting and fsyncing
the whole document on every ``robolake devices add`` made enrolment quadratic (3,000 devices took
537 s; the last adds cost 180 ms each). Now an add appends one line of about 260 bytes and
fsyncs it, whatever the size of the registry, and a bulk import appends all its lines with one
fsync.

- **One file, not a snapshot with a journal beside it.** A reader opens one inode, so it can
  never fold a new snapshot with an old journal (or the reverse) while a compaction is under way,
  and a mounted secret, a backup or a copy is still one file. A compacted file is simply a journal
  without redundant lines: one ``add`` per token, revocations folded in.
- **Readers re-read only the tail.** A replica remembers the inode, the header and the offset of
  the last complete line it folded. When the stat changes it reads from that offset; it reloads
  everything only when the file was replaced (compaction, or a mounted secret swapped wholesale),
  which the inode and the header's random ``generation`` reveal.
- **Writers lock.** Management commands take ``flock(LOCK_EX)`` on the file, then check that the
  path still names the inode they locked (a compaction may have renamed a new file over it while
  they waited), so concurrent ``robolake devices`` invocations never interleave lines.
- **No automatic compaction.** Revoked tokens stay in the registry (listings, and the organisation
  of past episodes, need them), so a compacted file holds one line per token ever enrolled, and
  the journal at most one more per token: its revocation, about 80 bytes next to the add's 260.
  The journal therefore never exceeds about 1.3 times its compacted size and folding it costs
  what reading the compacted file would; rewriting it on a threshold would buy nothing.
  ``robolake devices compact`` still folds revocations in (temporary file, fsync, rename, fsync
  of the directory, so replicas switch atomically), e.g. to convert an old-format file.
- **Crash safety.** A writer that dies mid-append leaves a last line without a newline. Readers
  never fold an incomplete line; the next writer truncates it before appending. Nobody saw the
  token it carried, since tokens are printed only after the fsync.
- **Backward compatible.** A registry in the old format (one JSON document, ``"version": 1``)
  still loads; the first write converts it (one compaction). Collectors must run this version
  before management commands write the new format: older collectors cannot read it.

What stays O(N): a process that starts afresh (each ``robolake devices add``) parses the whole
file once, to enforce one active token per device: about 13 µs per device on the 2-core
development machine (40 ms at 3,000 devices), once per process and without an fsync, next to
1.5 s of interpreter start. Long-lived processes (collectors, the simulator, the Python API)
read only the tail; bulk enrolment goes through ``robolake devices import`` (one process, one
fsync).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
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

from robolake.devices.errors import DeviceRegistryError

__all__ = [
    "ENV_DEVICES_FILE",
    "Compaction",
    "Device",
    "DeviceRegistry",
    "DeviceRegistryError",
    "Identity",
    "default_devices_file",
    "validate_identifier",
]

ENV_DEVICES_FILE: Final = "ROBOLAKE_DEVICES_FILE"
TOKEN_PREFIX: Final = "rlk"
FORMAT: Final = "robolake-devices"
FORMAT_VERSION: Final = 2
_TOKEN_RE: Final = re.compile(r"^rlk_([0-9a-f]{16})_([A-Za-z0-9_-]{32,128})$")
_ID_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_READ_BLOCK: Final = 1 << 20
_MAX_NAMED: Final = 10


def default_devices_file() -> Path:
    """``$ROBOLAKE_DEVICES_FILE``, else ``$XDG_CONFIG_HOME/robolake/devices.json``."""
    if explicit := os.environ.get(ENV_DEVICES_FILE):
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "robolake" / "devices.json"


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


@dataclass(frozen=True)
class Compaction:
    """What a compaction did, for the operator's log line."""

    tokens: int
    lines_before: int
    bytes_before: int
    bytes_after: int


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def validate_identifier(kind: str, value: str) -> str:
    """Device, capture point and organisation ids: short, printable, header-safe."""
    if not _ID_RE.fullmatch(value):
        raise DeviceRegistryError(
            f"invalid {kind} {value!r}: use 1-128 characters of letters, digits and . _ : -"
        )
    return value


def _named(ids: Iterable[str]) -> str:
    ordered = sorted(ids)
    shown = ", ".join(repr(i) for i in ordered[:_MAX_NAMED])
    more = len(ordered) - _MAX_NAMED
    return shown + (f" and {more} more" if more > 0 else "")


def _line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def _header() -> bytes:
    return _line({"format": FORMAT, "generation": secrets.token_hex(8), "version": FORMAT_VERSION})


def _add_event(device: Device) -> dict[str, Any]:
    return {"op": "add", "device": asdict(device)}


def _revoke_event(token_id: str, revoked_at: float) -> dict[str, Any]:
    return {"op": "revoke", "token_id": token_id, "revoked_at": revoked_at}


# The three functions below are the registry's only file I/O on the data path, kept at module
# level so tests can count what each operation reads and writes.
def _read_from(fd: int, offset: int) -> bytes:
    """Everything from ``offset`` to the end of the file."""
    parts = []
    while block := os.pread(fd, _READ_BLOCK, offset):
        parts.append(block)
        offset += len(block)
    return b"".join(parts)


def _append(fd: int, data: bytes) -> None:
    """Append and make it durable before anyone is told (tokens are printed after this)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def _write_new_file(path: Path, data: bytes) -> os.stat_result:
    """Write a complete file atomically: temp file, fsync, rename, fsync the directory."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _append(fd, data)
            stat = os.fstat(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return stat


def _stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class DeviceRegistry:
    """The device registry file: management (add, import, revoke, compact) and authentication."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        """Forget what was read; the next refresh reloads the whole file."""
        self._stamp: tuple[int, int, int, int] | None = None
        self._devices: dict[str, Device] = {}
        self._active: dict[str, set[str]] = {}  # device id → its active token ids
        self._lines = 0  # journal lines folded (the header excluded)
        self._offset = 0  # bytes folded: the end of the last complete line
        self._header: bytes | None = None  # None: an empty file, or the old format
        self._legacy = False

    # -- reading ---------------------------------------------------------------------------
    def _refresh(self) -> None:
        try:
            stamp = _stamp(os.stat(self.path))
        except FileNotFoundError:
            self._reset()
            return
        if stamp == self._stamp:
            return
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            self._reset()
            return
        except OSError as exc:
            raise DeviceRegistryError(f"unreadable device registry {self.path}: {exc}") from exc
        try:
            self._sync(fd)
        finally:
            os.close(fd)

    def _sync(self, fd: int) -> None:
        """Fold what the open file holds beyond what was already folded."""
        st = os.fstat(fd)
        if _stamp(st) == self._stamp:
            return
        try:
            if self._can_read_tail(fd, st):
                self._fold(_read_from(fd, self._offset))
            else:
                self._reset()
                self._load(_read_from(fd, 0))
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            self._reset()
            raise DeviceRegistryError(f"unreadable device registry {self.path}: {exc}") from exc
        except DeviceRegistryError:
            self._reset()
            raise
        self._stamp = _stamp(st)

    def _can_read_tail(self, fd: int, st: os.stat_result) -> bool:
        if self._stamp is None or self._header is None or self._legacy:
            return False
        same_file = (st.st_dev, st.st_ino) == self._stamp[:2] and st.st_size >= self._offset
        return same_file and os.pread(fd, len(self._header), 0) == self._header

    def _load(self, data: bytes) -> None:
        newline = data.find(b"\n")
        header = _parse_header(data[: newline + 1]) if newline >= 0 else None
        if header is not None:
            self._header = data[: newline + 1]
            self._offset = newline + 1
            self._fold(data[newline + 1 :])
        elif data.strip():
            raw: dict[str, Any] = json.loads(data)
            for entry in raw.get("devices", []):
                self._put(Device(**entry))
            self._lines = len(self._devices)
            self._offset = len(data)
            self._legacy = True

    def _fold(self, data: bytes) -> None:
        end = data.rfind(b"\n") + 1  # an incomplete last line is a write still under way
        for line in data[:end].split(b"\n")[:-1]:
            try:
                self._apply(json.loads(line))
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                raise DeviceRegistryError(
                    f"unreadable device registry {self.path}: line {self._lines + 2}: {exc}"
                ) from exc
            self._lines += 1
        self._offset += end

    def _apply(self, event: dict[str, Any]) -> None:
        op = event["op"]
        if op == "add":
            self._put(Device(**event["device"]))
        elif op == "revoke":
            revoked_at = float(event["revoked_at"])
            self._put(dataclasses.replace(self._devices[event["token_id"]], revoked_at=revoked_at))
        else:
            raise ValueError(f"unknown operation {op!r}")

    def _put(self, device: Device) -> None:
        previous = self._devices.get(device.token_id)
        if previous is not None and previous.active:
            tokens = self._active[previous.device_id]
            tokens.discard(previous.token_id)
            if not tokens:
                del self._active[previous.device_id]
        self._devices[device.token_id] = device
        if device.active:
            self._active.setdefault(device.device_id, set()).add(device.token_id)

    def devices(self) -> Iterator[Device]:
        """Every device in the registry, revoked ones included."""
        with self._lock:
            self._refresh()
            listed = sorted(self._devices.values(), key=lambda d: (d.capture_point_id, d.device_id))
        yield from listed

    def authenticate(self, token: str) -> Identity | None:
        """The identity a bearer token stands for, or None if it is unknown or revoked."""
        match = _TOKEN_RE.fullmatch(token)
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
    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[int]:
        """The registry file, locked against other writers and folded up to date."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            while True:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    held = os.fstat(fd)
                    try:
                        named = os.stat(self.path)
                    except FileNotFoundError:
                        named = None
                except BaseException:
                    os.close(fd)
                    raise
                if named is not None and (named.st_dev, named.st_ino) == (
                    held.st_dev,
                    held.st_ino,
                ):
                    break
                os.close(fd)  # replaced while we waited: lock the new file instead
        except OSError as exc:
            raise DeviceRegistryError(f"cannot lock device registry {self.path}: {exc}") from exc
        try:
            self._sync(fd)
            yield fd
        finally:
            os.close(fd)

    def _commit(self, fd: int, events: list[dict[str, Any]]) -> None:
        """Append the events with one fsync (or rewrite the file if it is new or old-format)."""
        try:
            if self._header is None:
                for event in events:
                    self._apply(event)
                self._rewrite()
                return
            if os.fstat(fd).st_size > self._offset:
                os.ftruncate(fd, self._offset)  # a torn line a crashed writer left
            data = b"".join(_line(event) for event in events)
            try:
                _append(fd, data)
            except OSError:
                # Whole lines of a failed batch would enrol devices whose tokens nobody gets.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, self._offset)
                raise
        except OSError as exc:
            self._reset()
            raise DeviceRegistryError(f"cannot write device registry {self.path}: {exc}") from exc
        for event in events:
            self._apply(event)
        self._lines += len(events)
        self._offset += len(data)
        self._stamp = _stamp(os.fstat(fd))

    def _rewrite(self) -> None:
        """Replace the file by its compacted form and adopt it as what was read."""
        header = _header()
        data = header + b"".join(_line(_add_event(d)) for d in self._devices.values())
        try:
            stat = _write_new_file(self.path, data)
        except OSError as exc:
            self._reset()
            raise DeviceRegistryError(f"cannot write device registry {self.path}: {exc}") from exc
        self._header = header
        self._legacy = False
        self._lines = len(self._devices)
        self._offset = len(data)
        self._stamp = _stamp(stat)

    def add(self, device_id: str, capture_point_id: str, organisation: str) -> str:
        """Enrol a device and return its token: shown once, never stored."""
        return self.add_many([(device_id, capture_point_id, organisation)])[device_id]

    def add_many(
        self, entries: Iterable[tuple[str, str, str]], *, replace: bool = False
    ) -> dict[str, str]:
        """Enrol many devices in one write: ``(device_id, capture_point_id, organisation)``.

        Returns device id → token. With ``replace``, active tokens of those devices are revoked
        first (the simulator re-enrols its devices on every run); otherwise they are an error,
        and nothing is enrolled.
        """
        wanted = list(entries)
        seen: set[str] = set()
        for device_id, capture_point_id, organisation in wanted:
            validate_identifier("device_id", device_id)
            validate_identifier("capture_point_id", capture_point_id)
            validate_identifier("organisation", organisation)
            if device_id in seen:
                raise DeviceRegistryError(f"device {device_id!r} appears twice in one enrolment")
            seen.add(device_id)
        tokens: dict[str, str] = {}
        with self._lock, self._exclusive() as fd:
            now = time.time()
            events = []
            enrolled = [d for d in seen if d in self._active]
            if enrolled and not replace:
                if len(enrolled) == 1:
                    (token_id,) = sorted(self._active[enrolled[0]])[:1]
                    raise DeviceRegistryError(
                        f"device {enrolled[0]!r} already has an active token ({token_id}); "
                        "revoke it first"
                    )
                raise DeviceRegistryError(
                    f"{len(enrolled)} devices already have an active token "
                    f"({_named(enrolled)}); revoke them first"
                )
            for device_id in enrolled:
                events += [_revoke_event(t, now) for t in sorted(self._active[device_id])]
            for device_id, capture_point_id, organisation in wanted:
                token_id = secrets.token_hex(8)
                while token_id in self._devices:  # 64 random bits: never in practice
                    token_id = secrets.token_hex(8)
                secret = secrets.token_urlsafe(32)
                device = Device(
                    token_id=token_id,
                    device_id=device_id,
                    capture_point_id=capture_point_id,
                    organisation=organisation,
                    secret_sha256=_digest(secret),
                    created_at=now,
                )
                events.append(_add_event(device))
                tokens[device_id] = f"{TOKEN_PREFIX}_{token_id}_{secret}"
            if events:
                self._commit(fd, events)
        return tokens

    def revoke(self, device_id: str) -> list[str]:
        """Revoke every active token of a device; return the revoked token ids."""
        with self._lock, self._exclusive() as fd:
            revoked = sorted(self._active.get(device_id, ()))
            if not revoked:
                raise DeviceRegistryError(f"device {device_id!r} has no active token")
            now = time.time()
            self._commit(fd, [_revoke_event(token_id, now) for token_id in revoked])
        return revoked

    def compact(self) -> Compaction:
        """Rewrite the registry without redundant lines (atomic; replicas reload it)."""
        if not self.path.exists():
            raise DeviceRegistryError(f"no device registry at {self.path}")
        with self._lock, self._exclusive() as fd:
            lines, size = self._lines, os.fstat(fd).st_size
            self._rewrite()
            return Compaction(len(self._devices), lines, size, self._offset)


def _parse_header(line: bytes) -> dict[str, Any] | None:
    """The header of a journal, or None if ``line`` is not one (the old format)."""
    try:
        header = json.loads(line)
    except ValueError:
        return None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        return None
    if header.get("version") != FORMAT_VERSION:
        raise DeviceRegistryError(
            f"device registry format version {header.get('version')!r} is not supported by "
            f"this robolake (it reads version {FORMAT_VERSION}); upgrade robolake"
        )
    return header
