"""HTTP calls to a collector, each retried until acknowledged, refused for good, or timed out.

Retriable: connection errors, timeouts, 5xx, 429, and problems the collector marks retriable
(``checksum_mismatch``: the bytes were damaged on the way). ``ticket_invalid`` (expired ticket)
is handled by the caller, which registers again. Everything else is a
:class:`~robolake.capture.errors.Rejected` with the collector's reason.

Chunk uploads send ``Expect: 100-continue``: a refused upload (quota, capacity, bad ticket)
costs a round trip, not the body.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp

from robolake.capture.errors import GaveUp, Rejected, Unauthorized
from robolake.capture.retry import Backoff, parse_retry_after
from robolake.episode.checksums import checksum

log = logging.getLogger(__name__)

ARROW_STREAM: Final = "application/vnd.apache.arrow.stream"


@dataclass
class UploadStats:
    """What a client saw: for the simulator's summary and the device's logs."""

    requests: int = 0
    retries: int = 0
    acknowledged_chunks: int = 0
    acknowledged_bytes: int = 0
    ack_latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    #: (episode_id, stream, seq, checksum) of every acknowledged chunk, when kept (simulator).
    ledger: list[tuple[str, str, int, str]] | None = None


class TicketExpired(Exception):
    """Internal: the collector says the ticket is invalid; register again and retry."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


class Uploader:
    """One device's connection to a collector (``base_url``), with its bearer token."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        token: str,
        *,
        backoff: Backoff | None = None,
        give_up_after: float | None = None,
        request_timeout: float = 60.0,
        stats: UploadStats | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self._auth = {"Authorization": f"Bearer {token}"}
        self.backoff = backoff or Backoff()
        self.give_up_after = give_up_after
        self.timeout = aiohttp.ClientTimeout(total=request_timeout)
        self.stats = stats or UploadStats()
        self._sleep = sleep

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: bytes,
        headers: dict[str, str],
        expect100: bool = False,
    ) -> Answer:
        """One request, retried while the failure is retriable."""
        began = time.monotonic()
        attempt = 0
        while True:
            retry_after: float | None = None
            reason = ""
            self.stats.requests += 1
            try:
                async with self.session.request(
                    method,
                    self.base_url + path,
                    data=io.BytesIO(body),
                    headers={**self._auth, **headers},
                    expect100=expect100,
                    timeout=self.timeout,
                ) as response:
                    text = await response.text()
                    try:
                        answer = Answer(response.status, json.loads(text) if text else {})
                    except ValueError:
                        answer = Answer(
                            response.status, {"reason": "not_json", "detail": text[:200]}
                        )
                    if response.status < 300:
                        return answer
                    reason = str(answer.body.get("reason", f"http_{response.status}"))
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    retriable = (
                        response.status >= 500
                        or response.status == 429
                        or bool(answer.body.get("retriable"))
                    )
                    if reason == "ticket_invalid":
                        raise TicketExpired(answer.body.get("detail", ""))
                    if response.status == 401:
                        raise Unauthorized(reason, 401, str(answer.body.get("detail", "")))
                    if not retriable:
                        raise Rejected(reason, response.status, str(answer.body.get("detail", "")))
            except (aiohttp.ClientError, TimeoutError) as exc:
                reason = type(exc).__name__
            self.stats.errors[reason] += 1
            if self.give_up_after is not None and time.monotonic() - began > self.give_up_after:
                raise GaveUp(
                    f"{method} {path}: still failing ({reason}) after {self.give_up_after} s"
                )
            delay = self.backoff.delay(attempt, retry_after)
            attempt += 1
            self.stats.retries += 1
            log.debug("%s %s: %s; retrying in %.2f s", method, path, reason, delay)
            await self._sleep(delay)

    async def register(self, manifest: bytes) -> tuple[str, float]:
        """Register an episode; the ticket and its expiry."""
        answer = await self._call(
            "POST", "/v1/episodes", body=manifest, headers={"Content-Type": "application/json"}
        )
        return str(answer.body["ticket"]), float(answer.body["expires_at"])

    async def put_chunk(
        self, ticket: str, episode_id: str, stream: str, seq: int, data: bytes
    ) -> None:
        """Upload one chunk until the collector acknowledges it."""
        began = time.monotonic()
        await self._call(
            "PUT",
            f"/v1/episodes/{episode_id}/streams/{stream}/chunks/{seq}",
            body=data,
            headers={
                "Content-Type": ARROW_STREAM,
                "Upload-Ticket": ticket,
                "Robolake-Checksum": checksum(data),
            },
            expect100=True,
        )
        self.stats.acknowledged_chunks += 1
        self.stats.acknowledged_bytes += len(data)
        self.stats.ack_latencies.append(time.monotonic() - began)
        if self.stats.ledger is not None:
            self.stats.ledger.append((episode_id, stream, seq, checksum(data)))

    async def complete(self, ticket: str, episode_id: str, completion: dict[str, Any]) -> None:
        """Declare the episode's per-stream counts."""
        await self._call(
            "POST",
            f"/v1/episodes/{episode_id}/complete",
            body=json.dumps(completion).encode(),
            headers={"Content-Type": "application/json", "Upload-Ticket": ticket},
        )
