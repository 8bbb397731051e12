"""The collector's HTTP API (aiohttp): registration, chunk upload, completion, health, metrics.

Request flow for a chunk, cheapest refusal first, so a bad or excess request costs little:
authenticate (401) → ticket (403) → route facts: stream, seq, media type (4xx) → declared size
(413 before the body is read) → device quota (429) → in-flight bytes (503) → read the body with a
running count → checksum (400) → contract validation (422) → produce with acks=all (503 on
failure) → 2xx. A 2xx is sent only after Kafka has acknowledged the record.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Final

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CONTENT_TYPE_LATEST

from robolake.collector.errors import Backpressure
from robolake.collector.limits import DeviceQuota, InflightBytes, Reservation, jittered
from robolake.collector.metrics import CollectorMetrics, method_label
from robolake.collector.problems import REASON_KEY, from_violation, problem
from robolake.collector.settings import CollectorSettings
from robolake.collector.sink import RecordSink
from robolake.collector.tickets import TICKET_HEADER, TicketError, TicketSigner
from robolake.devices.registry import DeviceRegistry, Identity
from robolake.episode.checksums import checksum, checksum_from_content_digest, verify_checksum
from robolake.episode.chunks import ChunkLimits, validate_chunk
from robolake.episode.completion import parse_completion
from robolake.episode.errors import ContractViolation
from robolake.episode.manifest import EpisodeManifest, parse_manifest
from robolake.episode.records import (
    RecordMeta,
    chunk_record,
    complete_record,
    manifest_record,
    parse_seq,
)

log = logging.getLogger(__name__)

ARROW_STREAM: Final = "application/vnd.apache.arrow.stream"
CHECKSUM_HEADER: Final = "Robolake-Checksum"
#: Registrations remembered per replica to answer 409 for a conflicting re-registration.
_REGISTRATIONS_REMEMBERED: Final = 100_000
_PARSED_TICKETS_CACHED: Final = 4096

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: The in-flight reservation an ``Expect: 100-continue`` check made for the handler.
RESERVATION_KEY: Final = web.RequestKey("reservation", Reservation)


class Refusal(Exception):
    """Internal: stop handling a request and answer with ``response``."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


@dataclass
class _State:
    draining: bool = False
    inflight_requests: int = 0


class Collector:
    """One collector process's request handlers and their shared limits."""

    def __init__(
        self,
        settings: CollectorSettings,
        *,
        registry: DeviceRegistry,
        sink: RecordSink,
        metrics: CollectorMetrics | None = None,
        topic: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.sink = sink
        self.metrics = metrics or CollectorMetrics()
        self.topic = topic or settings.topic
        self.signer = TicketSigner(settings.ticket_key, clock=clock)
        self.inflight = InflightBytes(settings.inflight_bytes)
        self.quota = DeviceQuota(settings.device_rate_bytes, settings.device_burst_bytes)
        self.limits = ChunkLimits(max_chunk_bytes=settings.max_chunk_bytes)
        self.state = _State()
        self._registrations: OrderedDict[str, str] = OrderedDict()
        self._manifests: OrderedDict[bytes, EpisodeManifest] = OrderedDict()
        self.metrics.inflight_capacity.set(settings.inflight_bytes)
        self.metrics.ready.set(0)

    # -- building blocks -------------------------------------------------------------------
    def _identity(self, request: web.Request) -> Identity:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Refusal(problem("unauthorized", "send 'Authorization: Bearer <device token>'"))
        identity = self.registry.authenticate(token.strip())
        if identity is None:
            raise Refusal(
                problem("unauthorized", "device token unknown or revoked; ask an operator")
            )
        return identity

    def _ticket_manifest(self, request: web.Request, identity: Identity) -> EpisodeManifest:
        text = request.headers.get(TICKET_HEADER)
        if not text:
            raise Refusal(
                problem(
                    "ticket_invalid",
                    f"send the '{TICKET_HEADER}' header returned by POST /v1/episodes",
                )
            )
        try:
            ticket = self.signer.verify(text)
        except TicketError as exc:
            raise Refusal(problem("ticket_invalid", str(exc))) from exc
        if ticket.device_id != identity.device_id:
            raise Refusal(problem("forbidden", "this upload ticket belongs to another device"))
        manifest = self._parsed(ticket.manifest)
        episode_id = request.match_info["episode_id"]
        if manifest.episode_id != episode_id:
            raise Refusal(
                problem(
                    "forbidden",
                    f"the upload ticket is for episode {manifest.episode_id}, not {episode_id}",
                )
            )
        return manifest

    def _parsed(self, document: bytes) -> EpisodeManifest:
        """A manifest document (registered, or carried by a ticket) parsed and checked once
        per replica: the schema check costs milliseconds, more than the rest of a request."""
        key = hashlib.sha256(document).digest()
        manifest = self._manifests.get(key)
        if manifest is None:
            manifest = parse_manifest(document)
            self._manifests[key] = manifest
            if len(self._manifests) > _PARSED_TICKETS_CACHED:
                self._manifests.popitem(last=False)
        return manifest

    def _check_open(self) -> None:
        if self.state.draining:
            raise Refusal(
                problem(
                    "draining",
                    "this collector is shutting down; retry (another replica will answer)",
                    retry_after=jittered(1.0),
                )
            )

    def _declared_length(self, request: web.Request, limit: int, reason: str) -> int | None:
        length = request.content_length
        if length is not None and length > limit:
            raise Refusal(
                problem(
                    reason,
                    f"body of {length} bytes exceeds the limit of {limit} bytes",
                    extra={"limit": limit},
                )
            )
        return length

    async def _read_body(self, request: web.Request, limit: int, reason: str) -> bytearray:
        """Read the body within ``body_timeout`` seconds (408 otherwise); see :meth:`_receive`."""
        try:
            async with asyncio.timeout(self.settings.body_timeout):
                return await self._receive(request, limit, reason)
        except TimeoutError:
            raise Refusal(
                problem(
                    "request_timeout",
                    f"the body did not arrive within {self.settings.body_timeout:.0f} s; "
                    "retry on a better link",
                )
            ) from None

    async def _receive(self, request: web.Request, limit: int, reason: str) -> bytearray:
        """Read at most ``limit`` bytes, refusing as soon as the running count passes it.

        With a Content-Length the body goes into one buffer of exactly that size (no copies
        while reading), so a request holds about one body's bytes, the size it reserved.
        """
        length = request.content_length
        if length is not None:
            body = bytearray(length)
            view = memoryview(body)
            filled = 0
            while filled < length:
                piece = await request.content.readany()
                if not piece:
                    raise Refusal(problem("bad_request", "body shorter than Content-Length"))
                end = filled + len(piece)
                if end > length:
                    raise Refusal(problem("bad_request", "body longer than Content-Length"))
                view[filled:end] = piece
                filled = end
            view.release()
            return body
        grown = bytearray()
        while piece := await request.content.readany():
            grown += piece
            if len(grown) > limit:
                raise Refusal(
                    problem(
                        reason, f"body exceeds the limit of {limit} bytes", extra={"limit": limit}
                    )
                )
        return grown

    async def _produce(
        self, meta: RecordMeta, identity: Identity, value: bytes | bytearray
    ) -> None:
        # Identity and provenance come from the authenticated token, never from the body; the
        # organisation is stamped here, once, so no reader needs the device registry.
        stamped = replace(
            meta,
            device_id=identity.device_id,
            capture_point_id=identity.capture_point_id,
            organisation=identity.organisation,
        )
        await self.sink.send(self.topic, stamped.key, value, stamped.headers())

    def _media_type(self, request: web.Request, expected: str) -> None:
        if request.content_type != expected:
            raise Refusal(
                problem(
                    "unsupported_media_type",
                    f"Content-Type must be {expected}, got {request.content_type or 'none'}",
                )
            )

    # -- handlers --------------------------------------------------------------------------
    async def register(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/episodes``: check the manifest, put it in Kafka, return a ticket."""
        self._check_open()
        identity = self._identity(request)
        self._media_type(request, "application/json")
        limit = self.settings.max_manifest_bytes
        self._declared_length(request, limit, "payload_too_large")
        body = bytes(await self._read_body(request, limit, "payload_too_large"))
        # Through the cache: the ticket carries these very bytes, so the episode's first chunk
        # on this replica finds them parsed and checked.
        manifest = self._parsed(body)
        if (manifest.device_id, manifest.capture_point_id) != (
            identity.device_id,
            identity.capture_point_id,
        ):
            raise Refusal(
                problem(
                    "forbidden",
                    f"the manifest names device {manifest.device_id} at "
                    f"{manifest.capture_point_id}, but the token is for device "
                    f"{identity.device_id} at {identity.capture_point_id}",
                )
            )
        digest = checksum(body)
        previous = self._registrations.get(manifest.episode_id)
        if previous is not None and previous != digest:
            raise Refusal(
                problem(
                    "episode_conflict",
                    f"episode {manifest.episode_id} was registered with another manifest; "
                    "episode ids are unique per recording -- generate a new UUIDv7",
                )
            )
        try:
            ticket, expires_at = self.signer.issue(
                device_id=identity.device_id,
                capture_point_id=identity.capture_point_id,
                organisation=identity.organisation,
                manifest=body,
                ttl=self.settings.ticket_ttl,
            )
        except TicketError as exc:
            raise Refusal(problem("payload_too_large", str(exc))) from exc
        with self.inflight_reserve(identity, len(body)):
            await self._produce(manifest_record(manifest, body), identity, body)
        self._registrations[manifest.episode_id] = digest
        if len(self._registrations) > _REGISTRATIONS_REMEMBERED:
            self._registrations.popitem(last=False)
        if previous is None:
            self.metrics.capture_point_episodes.labels(identity.capture_point_id).inc()
        base = f"/v1/episodes/{manifest.episode_id}"
        return web.json_response(
            {
                "episode_id": manifest.episode_id,
                "ticket": ticket,
                "expires_at": expires_at,
                "chunk_url": f"{base}/streams/{{stream}}/chunks/{{seq}}",
                "complete_url": f"{base}/complete",
            },
            status=200 if previous is not None else 201,
        )

    async def put_chunk(self, request: web.Request) -> web.StreamResponse:
        """``PUT .../chunks/{seq}``: validate one chunk; acknowledge once Kafka holds it."""
        began = time.perf_counter()
        self._check_open()
        identity = self._identity(request)
        manifest = self._ticket_manifest(request, identity)
        stream = request.match_info["stream"]
        manifest.stream(stream)  # unknown_stream before reading anything
        try:
            seq = parse_seq(request.match_info["seq"])
        except ValueError as exc:
            raise Refusal(problem("bad_request", str(exc))) from None
        self._media_type(request, ARROW_STREAM)
        declared = request.headers.get(CHECKSUM_HEADER)
        if declared is None and (digest := request.headers.get("Content-Digest")):
            declared = checksum_from_content_digest(digest)
        if declared is None:
            raise Refusal(
                problem(
                    "bad_request",
                    f"send the chunk's checksum as '{CHECKSUM_HEADER}: sha256:<hex>' or "
                    "'Content-Digest: sha-256=:<base64>:'",
                )
            )
        limit = self.settings.max_chunk_bytes
        length = self._declared_length(request, limit, "chunk_too_large")
        reservation = request.get(RESERVATION_KEY) or self.inflight_reserve(
            identity, length if length is not None else limit
        )
        try:
            # Immutable bytes at once: the buffer read into is dropped here, and librdkafka's
            # produce() takes read-only buffers only, so this is the body's one copy.
            body = bytes(await self._read_body(request, limit, "chunk_too_large"))
            digest = verify_checksum(body, declared)
            chunk = validate_chunk(body, manifest, stream, limits=self.limits)
            record = chunk_record(manifest, stream, seq, body, digest=digest)
            await self._produce(record, identity, body)
        finally:
            reservation.release()
            self.metrics.inflight_bytes.set(self.inflight.used)
        self.metrics.chunks_accepted.inc()
        self.metrics.bytes_accepted.inc(len(body))
        self.metrics.capture_point_bytes.labels(identity.capture_point_id).inc(len(body))
        self.metrics.ack_latency.observe(time.perf_counter() - began)
        return web.json_response(
            {
                "episode_id": manifest.episode_id,
                "stream": stream,
                "seq": seq,
                "checksum": declared,
                "rows": chunk.num_rows,
                "bytes": len(body),
            },
            status=201,
        )

    def inflight_reserve(self, identity: Identity, size: int) -> Reservation:
        """Charge the device's quota and reserve in-flight bytes (429 / 503 when full)."""
        self.quota.charge(identity.device_id, size)
        reservation = self.inflight.reserve(size)
        self.metrics.inflight_bytes.set(self.inflight.used)
        return reservation

    async def complete(self, request: web.Request) -> web.StreamResponse:
        """``POST .../complete``: the device's final per-stream chunk and row counts."""
        self._check_open()
        identity = self._identity(request)
        manifest = self._ticket_manifest(request, identity)
        self._media_type(request, "application/json")
        limit = self.settings.max_manifest_bytes
        self._declared_length(request, limit, "payload_too_large")
        body = bytes(await self._read_body(request, limit, "payload_too_large"))
        counts = parse_completion(body, manifest)
        with self.inflight_reserve(identity, len(body)):
            await self._produce(complete_record(manifest, body), identity, body)
        self.metrics.episodes_completed.inc()
        return web.json_response(
            {
                "episode_id": manifest.episode_id,
                "streams": {n: {"chunks": c.chunks, "rows": c.rows} for n, c in counts.items()},
            }
        )

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        """Alive: the process answers."""
        return web.json_response({"status": "alive"})

    async def readyz(self, request: web.Request) -> web.StreamResponse:
        """Ready: not draining and Kafka reachable."""
        ready = not self.state.draining and await self.sink.ping()
        self.metrics.ready.set(1 if ready else 0)
        if not ready:
            reason = "draining" if self.state.draining else "kafka_unavailable"
            return problem(reason, "not ready to take uploads", retry_after=jittered(2.0))
        return web.json_response({"status": "ready"})

    async def metrics_endpoint(self, request: web.Request) -> web.StreamResponse:
        """Prometheus exposition: this process's metrics, or all its sibling workers'."""
        response = web.Response(body=self.metrics.exposition())
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    # -- plumbing ---------------------------------------------------------------------------
    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Turn every refusal into problem+json, count requests, track in-flight ones."""
        self.state.inflight_requests += 1
        try:
            response = await self._dispatch(request, handler)
        finally:
            self.state.inflight_requests -= 1
            if (reservation := request.get(RESERVATION_KEY)) is not None:
                reservation.release()  # a refusal before the handler took it over
                self.metrics.inflight_bytes.set(self.inflight.used)
        self._account(request, response)
        return response

    def _account(self, request: web.Request, response: web.StreamResponse) -> None:
        """Count a request by route template, method and status."""
        route = request.match_info.route.resource
        template = route.canonical if route is not None else "unmatched"
        method = method_label(request.method)
        self.metrics.requests.labels(template, method, str(response.status)).inc()
        self.metrics.worker_requests.inc()

    async def _dispatch(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except Refusal as refusal:
            response = refusal.response
        except ContractViolation as violation:
            response = from_violation(violation, instance=request.path)
        except Backpressure as pressure:
            response = problem(pressure.reason, str(pressure), retry_after=pressure.retry_after)
        except web.HTTPNotFound:
            response = problem("not_found", f"no resource at {request.path}")
        except web.HTTPMethodNotAllowed:
            response = problem("method_not_allowed", f"{request.method} not allowed here")
        except (HttpProcessingError, web.RequestPayloadError):
            # The body's framing broke while it was read (see collector/protocol.py).
            response = problem("malformed_request", "the body's framing is not valid HTTP/1.1")
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception:
            # A bug, not a bad request: log it with its traceback, answer in the same format.
            log.exception("unexpected error on %s %s", request.method, request.path)
            response = problem(
                "internal_error", "the collector hit an unexpected error; retry later"
            )
        if request.body_exists and not request.content.at_eof():
            # The body was refused unread: close the connection instead of draining it, so a
            # refused upload costs no buffer space while the device waits to retry.
            response.force_close()
        reason = response.get(REASON_KEY)
        if reason:
            self.metrics.rejections.labels(reason).inc()
        log.info("refused %s %s: %s %s", request.method, request.path, response.status, reason)
        return response

    async def expect_continue(self, request: web.Request) -> web.StreamResponse | None:
        """``Expect: 100-continue``: decide before the device sends its body.

        Everything that can refuse an upload without its bytes is checked here, including the
        device quota and the in-flight reservation (kept on the request for the handler), so a
        refused device never transmits its body and refused uploads cost no buffer space.
        """
        if request.version < (1, 1) or request.headers.get("Expect", "").lower() != "100-continue":
            return None
        try:
            self._check_open()
            identity = self._identity(request)
            if request.method == "PUT":
                limit = self.settings.max_chunk_bytes
                length = self._declared_length(request, limit, "chunk_too_large")
                self._ticket_manifest(request, identity).stream(request.match_info["stream"])
                reserved = length if length is not None else limit
                request[RESERVATION_KEY] = self.inflight_reserve(identity, reserved)
            else:
                self._declared_length(
                    request, self.settings.max_manifest_bytes, "payload_too_large"
                )
        except Refusal as refusal:
            response = refusal.response
        except ContractViolation as violation:
            response = from_violation(violation, instance=request.path)
        except Backpressure as pressure:
            response = problem(pressure.reason, str(pressure), retry_after=pressure.retry_after)
        else:
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return None
        # No body follows a refused expectation; close rather than wait for one.
        response.force_close()
        self._account(request, response)
        return response

    def build(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(
            middlewares=[self.middleware], client_max_size=self.settings.max_chunk_bytes
        )
        app.router.add_post("/v1/episodes", self.register, expect_handler=self.expect_continue)
        app.router.add_put(
            "/v1/episodes/{episode_id}/streams/{stream}/chunks/{seq}",
            self.put_chunk,
            expect_handler=self.expect_continue,
        )
        app.router.add_post(
            "/v1/episodes/{episode_id}/complete", self.complete, expect_handler=self.expect_continue
        )
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics_endpoint)
        return app
