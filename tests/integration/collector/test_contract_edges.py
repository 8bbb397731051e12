"""Issue 15 at the HTTP edge: inputs the collector once acknowledged, or answered with a 500.

Each must now be refused with a specific problem+json reason, by any replica, whatever it saw
before (the same contract the writer enforces: ``robolake.episode.documents`` and ``ids``).
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from collector_harness import Devices, LiveCollector, auth, chunk_headers, register, start_collector
from test_errors import assert_problem, chunk_url

from robolake.collector.settings import CollectorSettings
from robolake.endpoints import Endpoints
from robolake.episode.synthetic import SyntheticEpisode

JSON = {"Content-Type": "application/json"}


async def _post(live: LiveCollector, url: str, token: str, body: bytes, **extra: str) -> Any:
    return live.client.post(url, data=body, headers={**auth(token), **JSON, **extra})


def _with(episode: SyntheticEpisode, raw: str, replacement: str) -> bytes:
    text = episode.manifest_bytes().decode()
    assert raw in text
    return text.replace(raw, replacement, 1).encode()


@pytest.mark.parametrize("depth", [1000, 100])
async def test_deep_nesting_is_422_not_500(
    live: LiveCollector, devices: Devices, episode: SyntheticEpisode, depth: int
) -> None:
    """Defect 4: 2 KB of '[' made the JSON decoder raise RecursionError -> 500."""
    for nested in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
        async with await _post(
            live, f"{live.base}/v1/episodes", devices.token_a, nested.encode()
        ) as r:
            await assert_problem(r, 422, "manifest_invalid")
        tags = _with(episode, '"tags":[', f'"tags":[{nested},')
        async with await _post(live, f"{live.base}/v1/episodes", devices.token_a, tags) as r:
            body = await assert_problem(r, 422, "manifest_invalid")
        assert "nests deeper" in body["detail"]
    ticket = await register(live.client, live.base, devices.token_a, episode.manifest_bytes())
    url = f"{live.base}/v1/episodes/{episode.manifest.episode_id}/complete"
    nested = ("[" * 1000 + "]" * 1000).encode()
    async with await _post(live, url, devices.token_a, nested, **{"Upload-Ticket": ticket}) as r:
        await assert_problem(r, 422, "manifest_invalid")


async def test_unstorable_values_are_refused(
    live: LiveCollector, devices: Devices, episode: SyntheticEpisode
) -> None:
    """Defects 2, 3 and 7: each was acknowledged and then crashed the writer, or stored NaN."""
    task = episode.manifest_document["task"]
    rate = episode.manifest_document["streams"][0]["rate_hz"]
    episode_id = episode.manifest.episode_id
    cases = {
        "lone surrogate": _with(episode, f'"task":"{task}"', '"task":"pick\\ud800 box"'),
        "year 10889": _with(
            episode,
            f'"episode_id":"{episode_id}"',
            '"episode_id":"ffffffff-ffff-7fff-bfff-ffffffffffff"',
        ),
        "Infinity": _with(episode, f'"rate_hz":{json.dumps(rate)}', '"rate_hz":Infinity'),
        "1e999": _with(episode, f'"rate_hz":{json.dumps(rate)}', '"rate_hz":1e999'),
        "after 2262": _with(
            episode,
            f'"ended_at":"{episode.manifest_document["ended_at"]}"',
            '"ended_at":"9999-12-31T00:00:00Z"',
        ),
    }
    for name, body in cases.items():
        async with await _post(live, f"{live.base}/v1/episodes", devices.token_a, body) as r:
            problem = await assert_problem(r, 422, "manifest_invalid")
        assert problem["detail"], name


@pytest.mark.parametrize("seq", ["+3", "%D9%A3", "1_0", "0007", "%207", "1e3"])
async def test_seq_has_one_spelling(
    live: LiveCollector, devices: Devices, episode: SyntheticEpisode, seq: str
) -> None:
    """Defect 7: int() read '+3', '٣', '1_0' (10) and '0007' as chunk numbers."""
    ticket = await register(live.client, live.base, devices.token_a, episode.manifest_bytes())
    stream, _, data = next(episode.iter_chunks())
    async with live.client.put(
        chunk_url(live.base, episode.manifest.episode_id, stream, seq),
        data=io.BytesIO(data),
        headers=chunk_headers(devices.token_a, ticket, data),
    ) as r:
        body = await assert_problem(r, 400, "bad_request")
    assert "canonical" in body["detail"]


async def test_no_replica_lets_a_device_take_over_another_devices_episode(
    live: LiveCollector,
    devices: Devices,
    episode: SyntheticEpisode,
    settings: CollectorSettings,
    stack_endpoints: Endpoints,
    kafka_topic: str,
) -> None:
    """Defect 5: the 409 lived in one process; a restarted or second replica gave B a 201."""
    await register(live.client, live.base, devices.token_a, episode.manifest_bytes())
    stolen = json.loads(episode.manifest_bytes())
    stolen.update(device_id="dev-b", capture_point_id="cp-b", task="someone else's")
    body = json.dumps(stolen).encode()
    collector, server = await start_collector(settings, stack_endpoints, kafka_topic)  # a replica
    try:
        for base in (live.base, str(server.make_url("")).rstrip("/")):
            async with await _post(live, f"{base}/v1/episodes", devices.token_b, body) as r:
                problem = await assert_problem(r, 403, "episode_not_owned")
            assert "dev-b" in problem["detail"]
    finally:
        await server.close()
        await collector.sink.stop()
