"""A running pipeline plus ``robolake exporter``, all registered as Prometheus targets.

Used by the live dashboard test and the contribution report test: collector and writer come from
:class:`pipeline_harness.Pipeline`; the exporter scans the test's bucket every 2 s.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from pipeline_harness import Pipeline

from robolake.capture.simulator import SimulationConfig, SimulationResult, simulate
from robolake.endpoints import Endpoints
from robolake.launch import ServiceProcess, robolake_argv, service_env
from robolake.stack.process import free_port


@dataclass
class OpsRun:
    """A finished simulation on a pipeline whose exporter keeps scanning."""

    pipeline: Pipeline
    result: SimulationResult
    exporter_port: int


async def prometheus_query(url: str, query: str) -> dict[str, Any]:
    """One instant query; the ``data`` member of Prometheus' answer (raises on errors)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/api/v1/query", params={"query": query}) as response,
    ):
        body = await response.json()
    assert body.get("status") == "success", f"{query}: {body}"
    data: dict[str, Any] = body["data"]
    return data


def _register(targets: Path, name: str, port: int, topic: str) -> Path:
    path = targets / f"{name}-{topic}.json"
    document = [{"targets": [f"127.0.0.1:{port}"], "labels": {"service": name, "test": topic}}]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document))
    tmp.replace(path)  # Prometheus never reads half a file
    return path


@asynccontextmanager
async def ops_run(
    endpoints: Endpoints,
    topic: str,
    bucket: str,
    workdir: Path,
    *,
    targets: Path | None,
    capture_points: int,
    duration_s: float,
) -> AsyncIterator[OpsRun]:
    """Pipeline + exporter, a simulation, and every acknowledged chunk in the shards."""
    registered: list[Path] = []
    exporter: ServiceProcess | None = None
    async with Pipeline(endpoints, topic, bucket, workdir) as pipeline:
        try:
            exporter_port = free_port()
            exporter = ServiceProcess.start(
                "exporter",
                robolake_argv(
                    "exporter", "--port", str(exporter_port), "--interval", "2",
                    "--devices-file", str(pipeline.devices_file),
                ),
                env=service_env(pipeline.dataset_endpoints),
                log_path=workdir / "exporter.log",
            )  # fmt: skip
            if targets is not None:
                targets.mkdir(parents=True, exist_ok=True)
                ports = {
                    "collector": pipeline.collector_port,
                    "writer": pipeline.writer_port,
                    "exporter": exporter_port,
                }
                registered = [_register(targets, n, p, topic) for n, p in ports.items()]
            result = await simulate(
                SimulationConfig(
                    collector_url=pipeline.collector_url,
                    devices_file=pipeline.devices_file,
                    spool_dir=workdir / "spool",
                    capture_points=capture_points,
                    duration_s=duration_s,
                    rate_mb_s=4.0,
                    episode_seconds=2.0,
                    organisations=3,
                )
            )
            assert result.failed_episodes == 0, result.render()
            audit = await pipeline.audit([(e, s, q) for e, s, q, _ in result.ledger])
            assert audit.missing == 0, audit
            exporter.check()
            yield OpsRun(pipeline, result, exporter_port)
        finally:
            for path in registered:
                path.unlink(missing_ok=True)
            if exporter is not None:
                code = await exporter.astop(grace=30)
                assert code == 0, exporter.tail()


async def wait_for(
    url: str, query: str, want: float, *, timeout: float = 60.0
) -> list[dict[str, Any]]:
    """Poll ``query`` (bounded in time) until its single value equals ``want``."""
    deadline = time.monotonic() + timeout
    result: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        result = (await prometheus_query(url, query))["result"]
        if len(result) == 1 and float(result[0]["value"][1]) == want:
            return result
        await asyncio.sleep(1.0)
    raise AssertionError(f"{query} never reached {want} within {timeout:.0f} s; last: {result}")
