"""``/metrics`` of a robolake process: one aiohttp endpoint serving a Prometheus registry.

The writer and the maintenance service serve it the same way; the one thing that differs is
which error a busy port becomes, so the caller's service reports it as its own.
"""

from __future__ import annotations

import contextlib

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from robolake.errors import RobolakeError


async def serve_metrics(
    stack: contextlib.AsyncExitStack,
    registry: CollectorRegistry,
    host: str,
    port: int,
    *,
    error: type[RobolakeError],
    hint: str = "pick another --metrics-port",
) -> None:
    """Serve ``registry`` on ``http://host:port/metrics`` until ``stack`` closes; a port that
    cannot be bound raises ``error`` naming it and ``hint``."""

    async def handler(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        raise error(
            f"cannot serve /metrics on {host}:{port} ({exc.strerror or exc}); {hint}"
        ) from exc
