"""Requests aiohttp's HTTP parser rejects, answered as problem+json like every other refusal.

A request whose head cannot be parsed (a header past the size limits, too many headers,
Content-Length together with Transfer-Encoding, an invalid Content-Length, broken chunk framing)
never reaches the application or its middleware: aiohttp 3 answers it from
``RequestHandler.handle_error`` with a text/plain body, logs it as an error with a traceback, and
offers no hook for either (aio-libs/aiohttp#3287; aiohttp 4 routes such requests through the
middleware instead). So the collector's runner builds its connections with
:class:`ProblemRequestHandler`, whose ``handle_error`` answers ``400 malformed_request`` and logs
one line. Oversized headers get 400 too, not 431: aiohttp reports a too-long request line, a
too-long header and too many headers alike, and devices branch on ``reason`` anyway.

The parser's limits are set here explicitly rather than left to aiohttp's defaults.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

from robolake.collector.metrics import CollectorMetrics
from robolake.collector.problems import REASON_KEY, problem
from robolake.collector.tickets import MAX_TICKET_CHARS

log = logging.getLogger(__name__)

#: Request line: the longest route with a 36-character episode id and a 64-character stream
#: name is under 200 bytes; this is aiohttp's default, ample for any query string too.
MAX_LINE_SIZE: Final = 8190
#: One header field: the upload ticket is the largest header a device sends.
MAX_FIELD_SIZE: Final = MAX_TICKET_CHARS + 1024
#: Header count: a device sends about ten; aiohttp's default.
MAX_HEADERS: Final = 128


def _summary(exc: HttpProcessingError) -> str:
    """The parser's complaint without the request bytes it quotes on the lines below."""
    if isinstance(exc, LineTooLong) and len(exc.args) > 1:
        return f"a request line or header field longer than its limit ({exc.args[1]} bytes)"
    first = exc.message.split("\n", 1)[0].rstrip(" :")
    return first or type(exc).__name__


class ProblemRequestHandler(web.RequestHandler):
    """aiohttp's per-connection protocol with problem+json answers for what it refuses itself."""

    __slots__ = ("_metrics",)

    def __init__(
        self, manager: web.Server, *, metrics: CollectorMetrics | None = None, **kwargs: Any
    ) -> None:
        super().__init__(manager, **kwargs)
        self._metrics = metrics

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            # As in aiohttp: a response is on the wire already; only closing is left.
            raise ConnectionError("response already started; cannot send a problem")
        if isinstance(exc, HttpProcessingError) and 400 <= status < 500:
            # The device's HTTP stack or a middlebox is at fault, not the collector.
            summary = _summary(exc)
            log.info("refused a malformed request from %s: %s", request.remote, summary)
            response = problem(
                "malformed_request",
                f"not a valid HTTP/1.1 request: {summary}; the connection is closed",
            )
        else:
            # An exception outside the middleware (the Expect handler) or a handler timeout.
            log.error(
                "unexpected error on a request from %s (HTTP %d)",
                request.remote,
                status,
                exc_info=exc,
            )
            response = problem(
                "internal_error", "the collector hit an unexpected error; retry later"
            )
        response.force_close()
        if self._metrics is not None:
            reason = response[REASON_KEY]
            self._metrics.rejections.labels(reason).inc()
            self._metrics.requests.labels("unmatched", "UNKNOWN", str(response.status)).inc()
        return response

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, web.RequestPayloadError):
            # aiohttp reads what is left of a refused body before closing ("lingering"); a body
            # that breaks then was the device's fault and has already been answered.
            log.info("closed a connection whose request body broke after the response: %s", exc)
            return
        super().log_exception(*args, **kwargs)


class ProblemServer(web.Server):
    """A :class:`web.Server` whose connections are :class:`ProblemRequestHandler`."""

    def __init__(self, *args: Any, metrics: CollectorMetrics | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._metrics = metrics

    def __call__(self) -> ProblemRequestHandler:
        # aiohttp's own __call__ builds a plain RequestHandler from the same arguments.
        return ProblemRequestHandler(self, loop=self._loop, metrics=self._metrics, **self._kwargs)


class CollectorRunner(web.AppRunner):
    """An :class:`web.AppRunner` serving through :class:`ProblemServer`, with explicit limits."""

    def __init__(
        self, app: web.Application, *, metrics: CollectorMetrics | None = None, **kwargs: Any
    ) -> None:
        kwargs.setdefault("max_line_size", MAX_LINE_SIZE)
        kwargs.setdefault("max_field_size", MAX_FIELD_SIZE)
        kwargs.setdefault("max_headers", MAX_HEADERS)
        super().__init__(app, **kwargs)
        self._collector_metrics = metrics

    async def _make_server(self) -> web.Server:
        # aiohttp's version starts the app and gathers the handler arguments; keep all of that
        # and only swap the class that makes connections.
        server = await super()._make_server()
        return ProblemServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            metrics=self._collector_metrics,
            **server._kwargs,
        )
