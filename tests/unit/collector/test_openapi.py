"""The OpenAPI file in schemas/ describes the collector as built: routes, reasons, statuses."""

from __future__ import annotations

import re
from typing import Any

from robolake.collector.app import Collector
from robolake.collector.problems import STATUS, status_of
from robolake.collector.settings import CollectorSettings
from robolake.devices.registry import DeviceRegistry
from robolake.episode.errors import REASONS
from robolake.episode.schemas import load_json


class _NoSink:
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, topic: str, key: bytes, value: Any, headers: Any) -> None: ...

    async def ping(self) -> bool:
        return True


def _app_routes(tmp_path: Any) -> set[tuple[str, str]]:
    settings = CollectorSettings(devices_file=tmp_path / "d.json", ticket_key=b"k" * 32)
    app = Collector(
        settings, registry=DeviceRegistry(settings.devices_file), sink=_NoSink()
    ).build()
    routes = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "OPTIONS"):
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        routes.add((route.method.lower(), str(path)))
    return routes


def test_every_route_of_the_app_is_in_the_spec_and_back(tmp_path: Any) -> None:
    api = load_json("collector.openapi.json")
    documented = {
        (method, path)
        for path, item in api["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch")
    }
    assert _app_routes(tmp_path) == documented


def test_collector_reasons_and_statuses_match_the_spec() -> None:
    api = load_json("collector.openapi.json")
    assert set(api["components"]["schemas"]["CollectorReason"]["enum"]) == set(STATUS)
    for path, item in api["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            statuses = {
                int(code) for code in operation["responses"] if re.fullmatch(r"\d{3}", code)
            }
            if path.startswith("/v1/"):
                # Every authenticated operation documents the statuses any request can get.
                assert {401, 403, 429, 503} <= statuses, (method, path)
    documented_statuses = {
        int(code)
        for item in api["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict)
        for code in operation.get("responses", {})
    }
    for reason in (*STATUS, *REASONS):
        if reason in ("record_invalid", "method_not_allowed", "not_found"):
            continue  # writer-side, or answered for any path
        assert status_of(reason) in documented_statuses, reason
