"""Uploads through a collector into the real broker: what lands, and that retries are safe."""

from __future__ import annotations

import io

from collector_harness import (
    ARROW,
    Devices,
    LiveCollector,
    auth,
    chunk_headers,
    read_topic,
    register,
)

from robolake.endpoints import Endpoints
from robolake.episode.checksums import checksum
from robolake.episode.records import parse_record
from robolake.episode.synthetic import SyntheticEpisode


async def test_episode_lands_in_kafka_with_key_headers_and_unchanged_bytes(
    live: LiveCollector,
    devices: Devices,
    episode: SyntheticEpisode,
    stack_endpoints: Endpoints,
    kafka_topic: str,
) -> None:
    manifest = episode.manifest_bytes()
    ticket = await register(live.client, live.base, devices.token_a, manifest)
    chunks = episode.chunks()
    sent = 0
    for stream, seq, data in episode.iter_chunks():
        url = f"{live.base}/v1/episodes/{episode.manifest.episode_id}/streams/{stream}/chunks/{seq}"
        async with live.client.put(
            url, data=io.BytesIO(data), headers=chunk_headers(devices.token_a, ticket, data)
        ) as response:
            body = await response.json()
            assert response.status == 201, body
            assert body["checksum"] == checksum(data)
        sent += 1
    completion = episode.completion_document(chunks)
    async with live.client.post(
        f"{live.base}/v1/episodes/{episode.manifest.episode_id}/complete",
        json=completion,
        headers=auth(devices.token_a, ticket),
    ) as response:
        assert response.status == 200, await response.text()

    records = await read_topic(stack_endpoints.kafka_bootstrap, kafka_topic, expect=sent + 2)
    assert len(records) == sent + 2
    assert len({r.partition for r in records}) == 1  # key = episode id: one partition
    metas = [parse_record(r.key, list(r.headers)) for r in records]
    assert [m.kind for m in metas] == ["manifest"] + ["chunk"] * sent + ["complete"]
    assert all(r.key == episode.manifest.episode_id.encode() for r in records)
    assert all((m.device_id, m.capture_point_id) == ("dev-a", "cp-a") for m in metas)
    assert records[0].value == manifest
    by_key = {(m.stream, m.seq): r.value for m, r in zip(metas, records, strict=True)}
    for stream, seq, data in episode.iter_chunks():
        assert by_key[(stream, seq)] == data  # bytes unchanged
        meta = next(m for m in metas if (m.stream, m.seq) == (stream, seq))
        assert meta.checksum == checksum(data)
        assert meta.stream_type == episode.manifest.stream(stream).stream_type.key
    assert live.collector.metrics.chunks_accepted._value.get() == sent


async def test_retried_puts_and_re_registration_are_safe(
    live: LiveCollector,
    devices: Devices,
    episode: SyntheticEpisode,
    stack_endpoints: Endpoints,
    kafka_topic: str,
) -> None:
    manifest = episode.manifest_bytes()
    first_ticket = await register(live.client, live.base, devices.token_a, manifest)
    # The same manifest again (a device that lost the first answer): 200, a usable ticket.
    async with live.client.post(
        f"{live.base}/v1/episodes",
        data=manifest,
        headers={**auth(devices.token_a), "Content-Type": "application/json"},
    ) as response:
        assert response.status == 200
        ticket = (await response.json())["ticket"]
    stream, seq, data = next(episode.iter_chunks())
    url = f"{live.base}/v1/episodes/{episode.manifest.episode_id}/streams/{stream}/chunks/{seq}"
    statuses = []
    for use in (first_ticket, ticket, ticket):
        async with live.client.put(
            url, data=io.BytesIO(data), headers=chunk_headers(devices.token_a, use, data)
        ) as response:
            statuses.append(response.status)
            assert (await response.json())["checksum"] == checksum(data)
    assert statuses == [201, 201, 201]
    records = await read_topic(stack_endpoints.kafka_bootstrap, kafka_topic, expect=5)
    chunk_records = [parse_record(r.key, list(r.headers)) for r in records[2:]]
    # Every retry is the same (episode, stream, seq, checksum): the writer keeps one.
    assert {(m.episode_id, m.stream, m.seq, m.checksum) for m in chunk_records} == {
        (episode.manifest.episode_id, stream, seq, checksum(data))
    }
    assert ARROW  # the media type the device used
