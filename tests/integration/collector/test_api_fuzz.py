"""Schema-driven bad input against a real collector: schemathesis generates requests from
``schemas/collector.openapi.json`` (valid and invalid, odd unicode, path tricks in stream names,
negative or huge ``seq``, random tickets and bodies). Every answer must be a specific 4xx
problem+json (or a success), never a 5xx, and nothing of it may reach the chunk topic.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import schemathesis
from aiokafka import AIOKafkaConsumer, TopicPartition
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from robolake.devices.registry import DeviceRegistry
from robolake.endpoints import Endpoints
from robolake.episode.schemas import schemas_dir
from robolake.episode.synthetic import SyntheticSpec, generate_episode
from robolake.launch import ServiceProcess, http_ok, robolake_argv, service_env
from robolake.provision import TopicSpec, ensure_topics
from robolake.stack.process import free_port

# Chunk bodies are opaque bytes to the generator (random, truncated, empty Arrow streams).
schemathesis.serializer.alias("application/vnd.apache.arrow.stream", "application/octet-stream")
SCHEMA = schemathesis.openapi.from_path(schemas_dir() / "collector.openapi.json")
TICKET_KEY = "fuzz-ticket-key-0123456789abcdef"
OUTCOMES: Counter[str] = Counter()


@dataclass
class FuzzTarget:
    base: str
    token: str
    ticket: str
    episode_id: str
    topic: str
    log_path: Path


def _end_offsets(bootstrap: str, topic: str) -> int:
    async def run() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, p) for p in range(3)]
            return sum((await consumer.end_offsets(partitions)).values())
        finally:
            await consumer.stop()

    return asyncio.run(run())


@pytest.fixture(scope="module")
def target(
    stack_endpoints: Endpoints, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FuzzTarget]:
    tmp = tmp_path_factory.mktemp("fuzz")
    topic = f"fuzz-{uuid.uuid4().hex[:12]}"
    asyncio.run(ensure_topics(stack_endpoints.kafka_bootstrap, [TopicSpec(topic, 3, {})]))
    registry = DeviceRegistry(tmp / "devices.json")
    token = registry.add("dev-f", "cp-f", "org-f")
    port = free_port()
    log_path = tmp / "collector.log"
    env = service_env(stack_endpoints, chunk_topic=topic, ticket_key=TICKET_KEY)
    argv = robolake_argv(
        "collector", "--port", str(port), "--devices-file", str(registry.path), "--device-rate", "0"
    )
    proc = ServiceProcess.start("collector", argv, env=env, log_path=log_path)
    base = f"http://127.0.0.1:{port}"
    proc.wait_ready(http_ok(f"{base}/readyz"))
    episode = generate_episode(
        SyntheticSpec(
            seed=4, duration_s=1.0, cameras=("head",), device_id="dev-f", capture_point_id="cp-f"
        )
    )
    response = requests.post(
        f"{base}/v1/episodes",
        data=episode.manifest_bytes(),
        timeout=10,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text
    before = _end_offsets(stack_endpoints.kafka_bootstrap, topic)  # the manifest record
    yield FuzzTarget(
        base, token, response.json()["ticket"], episode.manifest.episode_id, topic, log_path
    )
    assert proc.stop() == 0, proc.tail()
    after = _end_offsets(stack_endpoints.kafka_bootstrap, topic)
    print(
        f"\nAPI fuzz: {sum(OUTCOMES.values())} requests, "
        f"statuses {dict(sorted(OUTCOMES.items()))}, "
        f"5xx={sum(v for k, v in OUTCOMES.items() if k.startswith('5'))}, "
        f"records that reached the topic={after - before}"
    )
    assert after - before == 0


@SCHEMA.parametrize()
@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_generated_requests_get_4xx_problems_never_5xx(
    case: schemathesis.Case, target: FuzzTarget
) -> None:
    headers = {"Authorization": f"Bearer {target.token}"}
    variant = hash(repr(case.path_parameters) + repr(case.headers)) % 3
    if variant and case.path_parameters is not None and "episode_id" in case.path_parameters:
        # Reach past authorisation: a valid ticket on its own episode, fuzzed stream/seq/body.
        case.path_parameters["episode_id"] = target.episode_id
        headers["Upload-Ticket"] = target.ticket
    case.headers = {**(case.headers or {}), **headers}
    if variant == 2:
        case.headers.pop("Authorization")  # and a third without any token
    response = case.call(base_url=target.base, timeout=30)
    OUTCOMES[str(response.status_code)] += 1
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        content_type = response.headers.get("content-type", [""])[0]
        assert content_type.startswith("application/problem+json"), response.text
        body = response.json()
        assert body["reason"], body
        assert body["type"].endswith("/" + body["reason"]), body
