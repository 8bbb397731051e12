"""Fixtures for collector integration tests: devices, settings, in-process and subprocess
collectors, all producing to the test's own topic of the real broker."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import ClientSession
from collector_harness import (
    TICKET_KEY,
    CollectorProcess,
    Devices,
    LiveCollector,
    start_collector,
)

from robolake.collector.devices import DeviceRegistry
from robolake.collector.settings import CollectorSettings
from robolake.endpoints import Endpoints
from robolake.episode.synthetic import SyntheticEpisode, SyntheticSpec, generate_episode
from robolake.stack.process import free_port


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
        log_path = tmp_path / f"collector-{port}.log"
        env = {
            **os.environ,
            **stack_endpoints.to_env(),
            "ROBOLAKE_TICKET_KEY": TICKET_KEY,
            "ROBOLAKE_CHUNK_TOPIC": kafka_topic,
        }
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable, "-m", "robolake", "collector", "--port", str(port),
                    "--devices-file", str(devices.path), "--device-rate", "0", *extra,
                ],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        process = CollectorProcess(proc, f"http://127.0.0.1:{port}", log_path)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait()
