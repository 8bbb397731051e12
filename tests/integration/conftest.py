"""The real stack for integration tests: started once per run, one topic and bucket per test.

If ``ROBOLAKE_KAFKA_BOOTSTRAP`` and ``ROBOLAKE_S3_ENDPOINT`` (and the S3 keys) are set, the tests
use that stack and start nothing; otherwise a private stack is started in a temporary state
directory on free loopback ports and stopped at the end, and the test fails if any of its
processes is left behind. When a test fails, the tails of the stack's logs are attached to its
report.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from pathlib import Path

import pytest
from aiohttp import ClientSession
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from collector_harness import (
    TICKET_KEY,
    CollectorProcess,
    Devices,
    LiveCollector,
    spawn_collector,
    start_collector,
)
from isolation import isolated
from minio import Minio

from robolake.collector.settings import CollectorSettings
from robolake.devices.registry import DeviceRegistry
from robolake.endpoints import ENV_KAFKA_BOOTSTRAP, ENV_S3_ENDPOINT, Endpoints
from robolake.episode.synthetic import SyntheticEpisode, SyntheticSpec, generate_episode
from robolake.episode.topics import MAX_RECORD_BYTES
from robolake.launch import service_env
from robolake.stack.process import ProcessRecord, free_port, is_running, tail
from robolake.stack.stack import Stack

log = logging.getLogger(__name__)

_STACK: Stack | None = None


def _say(config: pytest.Config, line: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)
    log.info(line)


@pytest.fixture(scope="session")
def stack_endpoints(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Endpoints]:
    """Endpoints of a running stack: the one named by the environment, or a private one."""
    global _STACK
    if os.environ.get(ENV_KAFKA_BOOTSTRAP) and os.environ.get(ENV_S3_ENDPOINT):
        endpoints = Endpoints.from_env()
        _say(request.config, f"robolake stack: external, {endpoints}")
        yield endpoints
        return
    stack = Stack(tmp_path_factory.mktemp("stack"))
    _STACK = stack
    try:
        endpoints = stack.up(progress=lambda message: _say(request.config, f"stack: {message}"))
        for status in stack.status():
            _say(
                request.config,
                f"robolake stack: {status.name} {status.version} at {status.endpoint}",
            )
        yield endpoints
    finally:
        pids = stack.pids()
        stack.down()
        _STACK = None
        state = stack._load()["components"]
        leftover = [
            name
            for name, component in state.items()
            if "pid" in component and is_running(ProcessRecord.from_json(component))
        ]
        assert not leftover, f"stack processes left running after down: {leftover} {pids}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None]:
    """Attach the tails of the stack's logs to a failing test's report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and _STACK is not None:
        for status in _STACK.status():
            if status.log_path:
                report.sections.append(
                    (f"{status.name} log (tail)", tail(Path(status.log_path), lines=60))
                )


@pytest.fixture
def s3_client(stack_endpoints: Endpoints) -> Minio:
    """A ``minio`` client for the stack's S3 endpoint."""
    return Minio(
        stack_endpoints.s3_host,
        access_key=stack_endpoints.s3_access_key,
        secret_key=stack_endpoints.s3_secret_key,
        secure=stack_endpoints.s3_secure,
        region=stack_endpoints.s3_region,
    )


@pytest.fixture
def s3_bucket(s3_client: Minio) -> str:
    """A fresh, empty bucket for one test."""
    name = f"test-{uuid.uuid4().hex[:20]}"
    s3_client.make_bucket(name)
    return name


@pytest.fixture
def lake_endpoints(stack_endpoints: Endpoints, s3_bucket: str) -> Endpoints:
    """The stack's endpoints with a fresh bucket and a fresh Iceberg namespace for one test."""
    if not stack_endpoints.catalog_uri:
        pytest.skip("the stack under test has no Iceberg catalog")
    return isolated(stack_endpoints, s3_bucket)


@pytest.fixture
async def kafka_topic(stack_endpoints: Endpoints) -> AsyncIterator[str]:
    """A fresh topic for one test (3 partitions, sized for maximal chunk records)."""
    name = f"test-{uuid.uuid4().hex[:20]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=stack_endpoints.kafka_bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(name, 3, 1, topic_configs={"max.message.bytes": str(MAX_RECORD_BYTES)})]
        )
        assert all(code == 0 for _, code, *_ in response.topic_errors), response
        yield name
        await admin.delete_topics([name])
    finally:
        await admin.close()


@pytest.fixture
def local_stack(stack_endpoints: Endpoints) -> Stack:
    """The stack this run started, for tests that stop and restart its components."""
    if _STACK is None:
        pytest.skip("fault tests need the stack started by this test run, not an external one")
    return _STACK


# -- collectors (shared by the collector, capture and end-to-end tests) ----------------


@pytest.fixture
def devices(tmp_path: Path) -> Devices:
    registry = DeviceRegistry(tmp_path / "devices.json")
    return Devices(
        path=registry.path,
        token_a=registry.add("dev-a", "cp-a", "org-1"),
        token_b=registry.add("dev-b", "cp-b", "org-2"),
    )


@pytest.fixture
def settings(devices: Devices) -> CollectorSettings:
    return CollectorSettings(
        devices_file=devices.path,
        ticket_key=TICKET_KEY.encode(),
        device_rate_bytes=0,
        send_timeout=5.0,
    )


@pytest.fixture(scope="session")
def episode() -> SyntheticEpisode:
    """A short humanoid episode of device dev-a (two cameras, 2 s)."""
    return generate_episode(
        SyntheticSpec(
            seed=11, duration_s=2.0, cameras=("head", "wrist"), device_id="dev-a",
            capture_point_id="cp-a",
        )
    )  # fmt: skip


@pytest.fixture
async def live(
    settings: CollectorSettings, stack_endpoints: Endpoints, kafka_topic: str
) -> AsyncIterator[LiveCollector]:
    collector, server = await start_collector(settings, stack_endpoints, kafka_topic)
    async with ClientSession() as client:
        yield LiveCollector(collector, client, str(server.make_url("")).rstrip("/"))
    await server.close()
    await collector.sink.stop()


@pytest.fixture
def collector_process(
    tmp_path: Path, devices: Devices, stack_endpoints: Endpoints, kafka_topic: str
) -> Iterator[Callable[..., CollectorProcess]]:
    """Start ``robolake collector`` subprocesses producing to the test's topic."""
    started: list[CollectorProcess] = []

    def start(*extra: str) -> CollectorProcess:
        port = free_port()
        process = spawn_collector(
            tmp_path / f"collector-{port}.log",
            # Built at each start: a test may set a variable (monkeypatch.setenv) after the
            # fixture was created and before it starts its collector.
            service_env(stack_endpoints, ticket_key=TICKET_KEY, chunk_topic=kafka_topic),
            port=port,
            devices_file=devices.path,
            extra=extra,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()  # a test that stopped it already: nothing to signal
