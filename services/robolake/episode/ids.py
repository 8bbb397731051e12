"""Episode ids (UUIDv7) and the contract's timestamps (RFC 3339 text <-> ns since the epoch).

Devices generate the episode id, so retries of the same episode carry the same id; UUIDv7 puts the
creation time in the id's first 48 bits, which orders ids by time and gives the writer an
episode's date from the Kafka key alone (see :func:`episode_date`).

**Ownership.** An episode belongs to the device that made its id: the id's last 48 bits (the
last 12 hex digits) are the device's *owner tag*, ``sha256("robolake.episode-owner.v1\0" +
device_id)[:6]`` (:func:`owner_tag`; :func:`new_episode_id` makes such ids). Every collector
replica and every writer can check it from the id and the authenticated device alone -- no
shared state, no window that expires -- so no device can register, upload to or complete
another device's episode, whatever restarts, replicas or lost writer state came in between.
The tag is public: authentication proves who the device is, the tag only binds the id to it.
Two devices share a tag with probability 2^-48 per pair; 26 random bits per millisecond remain
per device.

**Range.** Only ids whose time is a date the dataset can name (before year 10000) are episode
ids, and timestamps must fit int64 nanoseconds (1677-09-21 .. 2262-04-11), the type of every
time column: anything accepted is storable.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import os
import re
import time
import uuid
from typing import Final

_TIMESTAMP = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$"
)
_UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
NS_PER_S: Final = 1_000_000_000
#: 10000-01-01T00:00:00Z in Unix ms: ids at or after it have no four-digit-year date.
MAX_EPISODE_MS: Final = 253_402_300_800_000
#: Nanosecond timestamps are int64 everywhere they are stored.
MIN_TIMESTAMP_NS: Final = -(2**63)
MAX_TIMESTAMP_NS: Final = 2**63 - 1
_OWNER_DOMAIN: Final = b"robolake.episode-owner.v1\0"
_OWNER_BITS: Final = 48


def uuid7(unix_ms: int | None = None, random_bits: bytes | None = None) -> str:
    """A UUIDv7 string (RFC 9562): 48-bit Unix milliseconds, version, 74 random bits, variant.

    Both inputs are injectable so synthetic episodes get deterministic ids.
    """
    ms = time.time_ns() // 1_000_000 if unix_ms is None else unix_ms
    rand = os.urandom(10) if random_bits is None else random_bits
    if not 0 <= ms < 1 << 48:
        raise ValueError(f"unix_ms {ms} does not fit 48 bits")
    if len(rand) < 10:
        raise ValueError("random_bits needs at least 10 bytes")
    r = int.from_bytes(rand[:10], "big")
    rand_a = (r >> 62) & 0xFFF
    rand_b = r & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return str(uuid.UUID(int=value))


def is_uuid7(text: str) -> bool:
    """Whether ``text`` is a canonical (lower-case) UUIDv7 with a storable time."""
    return _UUID7.fullmatch(text) is not None and int(text[:8] + text[9:13], 16) < MAX_EPISODE_MS


def owner_tag(device_id: str) -> int:
    """The 48-bit tag that ends the ids of ``device_id``'s episodes (see the module docstring)."""
    digest = hashlib.sha256(_OWNER_DOMAIN + device_id.encode()).digest()
    return int.from_bytes(digest[: _OWNER_BITS // 8], "big")


def new_episode_id(
    device_id: str, unix_ms: int | None = None, random_bits: bytes | None = None
) -> str:
    """A UUIDv7 owned by ``device_id``: its last 48 bits are :func:`owner_tag`.

    Devices call this (or do the same arithmetic) for every new recording; inputs as for
    :func:`uuid7`.
    """
    value = uuid.UUID(uuid7(unix_ms, random_bits)).int
    value = (value >> _OWNER_BITS << _OWNER_BITS) | owner_tag(device_id)
    return str(uuid.UUID(int=value))


def is_owned_by(episode_id: str, device_id: str) -> bool:
    """Whether the episode id was made for ``device_id`` (its owner tag matches)."""
    return int(episode_id[-12:], 16) == owner_tag(device_id)


def ownership_error(episode_id: str, device_id: str) -> str | None:
    """Why ``device_id`` may not use ``episode_id``, or None when it owns it."""
    if is_owned_by(episode_id, device_id):
        return None
    return (
        f"episode {episode_id} is not owned by device {device_id}: an episode id must end in the "
        f"device's owner tag {owner_tag(device_id):012x} (robolake.episode.ids.new_episode_id)"
    )


def uuid7_unix_ms(episode_id: str) -> int:
    """The Unix milliseconds embedded in a UUIDv7."""
    if not is_uuid7(episode_id):
        raise ValueError(f"{episode_id!r} is not a canonical UUIDv7")
    return uuid.UUID(episode_id).int >> 80


def episode_date(episode_id: str) -> dt.date:
    """UTC date of an episode id's timestamp: the date partition of its shards and index row."""
    seconds = uuid7_unix_ms(episode_id) // 1000
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).date()


def parse_timestamp_ns(text: str) -> int:
    """RFC 3339 date-time with offset and up to 9 fractional digits -> ns since the Unix epoch.

    Written by hand because :mod:`datetime` stops at microseconds and the contract keeps the
    device's nanoseconds.
    """
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not an RFC 3339 date-time with an offset")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, offset = match.group(7), match.group(8)
    dt.datetime(year, month, day, hour, minute, second)  # range check: raises ValueError
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if offset != "Z":
        sign = 1 if offset[0] == "+" else -1
        seconds -= sign * (int(offset[1:3]) * 3600 + int(offset[4:6]) * 60)
    nanos = int((fraction or "").ljust(9, "0"))
    ns = seconds * NS_PER_S + nanos
    if not MIN_TIMESTAMP_NS <= ns <= MAX_TIMESTAMP_NS:
        raise ValueError(f"{text!r} is outside the int64-nanosecond range 1677-09-21 .. 2262-04-11")
    return ns


def format_timestamp_ns(ns: int) -> str:
    """ns since the Unix epoch -> RFC 3339 in UTC with 9 fractional digits (lossless)."""
    seconds, nanos = divmod(ns, NS_PER_S)
    base = dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{nanos:09d}Z"
