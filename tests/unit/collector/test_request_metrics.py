"""The collector's request counter has bounded labels: a client cannot mint series.

Before, the ``method`` label took whatever method reached the app: every WebDAV and other
method the HTTP parser knows (PROPFIND, MKCOL, LOCK, ... about thirty, and any token at all
with the pure-Python parser) made new time series in every Prometheus scraping the collector.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

from fixtures.fake_producer import FakeProducers
from robolake.collector.app import Collector
from robolake.collector.metrics import CollectorMetrics, method_label
from robolake.collector.settings import CollectorSettings
from robolake.collector.sink import KafkaSink
from robolake.devices.registry import DeviceRegistry


def test_standard_methods_keep_their_name_and_others_are_other() -> None:
    assert [method_label(m) for m in ("GET", "PUT", "POST", "HEAD")] == [
        "GET",
        "PUT",
        "POST",
        "HEAD",
    ]
    assert {method_label(m) for m in ("FOO1", "get", "PROPFIND", "")} == {"OTHER"}


async def test_invented_methods_are_counted_under_one_label(tmp_path: Path) -> None:
    settings = CollectorSettings(
        devices_file=tmp_path / "devices.json", ticket_key=b"unit-test-ticket-key-0123456789abcdef"
    )
    metrics = CollectorMetrics()
    sink = KafkaSink("kafka:9092", metrics=metrics, factory=FakeProducers())
    collector = Collector(
        settings, registry=DeviceRegistry(settings.devices_file), sink=sink, metrics=metrics
    )
    server = TestServer(collector.build(), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as client:
            for method in ("PROPFIND", "MKCOL", "LOCK", "COPY", "MOVE"):
                async with client.request(method, server.make_url("/v1/episodes")) as r:
                    assert r.status == 405
    finally:
        await server.close()
    samples = [
        sample
        for family in metrics.registry.collect()
        if family.name == "robolake_collector_requests"
        for sample in family.samples
        if sample.name.endswith("_total")
    ]
    assert {sample.labels["method"] for sample in samples} == {"OTHER"}
    assert sum(sample.value for sample in samples) == 5
