"""A replica parses and checks each manifest document once: at registration, not again for the
episode's first chunk (the ticket carries the same bytes). The schema check costs milliseconds
per document, and a profile under the peer bench found the second parse at 7% of its samples."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

import robolake.collector.app as collector_app
from fixtures.fake_producer import FakeProducers
from robolake.collector.app import Collector
from robolake.collector.metrics import CollectorMetrics
from robolake.collector.settings import CollectorSettings
from robolake.collector.sink import KafkaSink
from robolake.devices.registry import DeviceRegistry
from robolake.episode.checksums import checksum
from robolake.episode.manifest import EpisodeManifest
from robolake.episode.synthetic import SyntheticSpec, generate_episode


async def test_a_registered_manifest_is_not_parsed_again_for_its_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[bytes] = []
    real = collector_app.parse_manifest

    def counting(document: bytes) -> EpisodeManifest:
        parsed.append(document)
        return real(document)

    monkeypatch.setattr(collector_app, "parse_manifest", counting)
    settings = CollectorSettings(
        devices_file=tmp_path / "devices.json", ticket_key=b"unit-test-ticket-key-0123456789abcdef"
    )
    registry = DeviceRegistry(settings.devices_file)
    token = registry.add("dev-1", "cp-1", "org-1")
    episode = generate_episode(
        SyntheticSpec(
            seed=3, duration_s=1.0, device_id="dev-1", capture_point_id="cp-1", frame_pool=2
        )
    )
    metrics = CollectorMetrics()
    sink = KafkaSink("kafka:9092", metrics=metrics, factory=FakeProducers())
    collector = Collector(settings, registry=registry, sink=sink, metrics=metrics)
    await sink.start()
    server = TestServer(collector.build(), host="127.0.0.1")
    await server.start_server()
    auth = {"Authorization": f"Bearer {token}"}
    try:
        async with aiohttp.ClientSession() as client:
            async with client.post(
                server.make_url("/v1/episodes"),
                data=episode.manifest_bytes(),
                headers={**auth, "Content-Type": "application/json"},
            ) as r:
                assert r.status == 201, await r.text()
                ticket = (await r.json())["ticket"]
            chunks = list(episode.iter_chunks(1 << 20))[:3]
            for seq, (stream, _, data) in enumerate(chunks):
                url = f"/v1/episodes/{episode.manifest.episode_id}/streams/{stream}/chunks/{seq}"
                async with client.put(
                    server.make_url(url),
                    data=data,
                    expect100=seq % 2 == 0,  # through the 100-continue check, and without
                    headers={
                        **auth,
                        "Upload-Ticket": ticket,
                        "Robolake-Checksum": checksum(data),
                        "Content-Type": "application/vnd.apache.arrow.stream",
                    },
                ) as r:
                    assert r.status == 201, await r.text()
    finally:
        await server.close()
        await sink.stop()
    assert parsed == [episode.manifest_bytes()]
