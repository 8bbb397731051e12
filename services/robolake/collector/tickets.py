"""Upload tickets: what lets any collector replica accept any chunk without shared state.

Registering an episode returns a ticket: the manifest exactly as registered (zlib-compressed), the
authenticated device, capture point and organisation, and an expiry, signed with HMAC-SHA256
under a key every replica shares (``$ROBOLAKE_TICKET_KEY``). Later requests carry it in the
``Upload-Ticket`` header; a replica checks the signature and expiry and gets back the manifest it
needs to validate chunks, without a lookup. A per-replica cache of parsed tickets only saves work;
correctness never depends on it.

Format: ``base64url(JSON payload) "." base64url(HMAC-SHA256(payload))``, no padding.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from robolake.collector.errors import CollectorError

TICKET_HEADER: Final = "Upload-Ticket"
#: Long enough for a multi-GB episode over a bad link, short enough to bound a leaked ticket.
DEFAULT_TTL_SECONDS: Final = 7 * 24 * 3600.0
#: Tickets travel in a header; the server accepts header fields up to this size.
MAX_TICKET_CHARS: Final = 24 * 1024


class TicketError(CollectorError):
    """A ticket is malformed, forged, expired or too large."""


@dataclass(frozen=True)
class Ticket:
    """The signed facts about one registered episode."""

    device_id: str
    capture_point_id: str
    organisation: str
    manifest: bytes
    expires_at: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TicketSigner:
    """Signs and verifies tickets with a key shared by all replicas."""

    def __init__(self, key: bytes, *, clock: Callable[[], float] = time.time) -> None:
        if len(key) < 16:
            raise TicketError("the ticket key must be at least 16 bytes; set ROBOLAKE_TICKET_KEY")
        self._key = key
        self._clock = clock

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()

    def issue(
        self,
        *,
        device_id: str,
        capture_point_id: str,
        organisation: str,
        manifest: bytes,
        ttl: float = DEFAULT_TTL_SECONDS,
    ) -> tuple[str, float]:
        """A signed ticket for a registered manifest, and its expiry (Unix seconds)."""
        expires_at = float(int(self._clock() + ttl))
        payload = json.dumps(
            {
                "d": device_id,
                "c": capture_point_id,
                "o": organisation,
                "m": _b64(zlib.compress(manifest, 6)),
                "x": int(expires_at),
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        text = f"{_b64(payload)}.{_b64(self._mac(payload))}"
        if len(text) > MAX_TICKET_CHARS:
            raise TicketError(
                f"the manifest makes a {len(text)}-character ticket (limit {MAX_TICKET_CHARS}); "
                "shorten tags, notes or element names"
            )
        return text, expires_at

    def verify(self, text: str) -> Ticket:
        """The ticket's facts, if the signature is ours and it has not expired."""
        if len(text) > MAX_TICKET_CHARS:
            raise TicketError("upload ticket too large")
        try:
            payload_b64, mac_b64 = text.strip().split(".")
            payload = _unb64(payload_b64)
            mac = _unb64(mac_b64)
        except ValueError as exc:
            raise TicketError("malformed upload ticket") from exc
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise TicketError("upload ticket signature does not match; register the episode again")
        try:
            data = json.loads(payload)
            ticket = Ticket(
                device_id=str(data["d"]),
                capture_point_id=str(data["c"]),
                organisation=str(data["o"]),
                manifest=zlib.decompress(_unb64(str(data["m"]))),
                expires_at=float(data["x"]),
            )
        except (ValueError, KeyError, TypeError, zlib.error) as exc:
            raise TicketError("malformed upload ticket payload") from exc
        if ticket.expires_at < self._clock():
            raise TicketError("upload ticket expired; register the episode again for a new one")
        return ticket
