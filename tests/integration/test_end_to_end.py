"""The whole pipeline with many simulated capture points: every acknowledged chunk is in the
shards exactly once (capture client → collector process → Kafka → writer process → MinIO)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import aiohttp

from robolake.capture.simulator import SimulationConfig, simulate
from robolake.dataset.audit import audit_chunks
from robolake.endpoints import Endpoints
from robolake.stack.process import free_port


async def _ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"not ready: {url}\n{log.read_text()}")


async def test_many_capture_points_every_acknowledged_chunk_in_shards_exactly_once(
    stack_endpoints: Endpoints, kafka_topic: str, s3_bucket: str, tmp_path: Path
) -> None:
    endpoints = replace(stack_endpoints, s3_bucket=s3_bucket)
    devices_file = tmp_path / "devices.json"
    env = {
        **os.environ,
        **endpoints.to_env(),
        "ROBOLAKE_TICKET_KEY": "end-to-end-ticket-key-0123456789abcdef",
        "ROBOLAKE_DEVICES_FILE": str(devices_file),
        "ROBOLAKE_CHUNK_TOPIC": kafka_topic,
    }
    collector_port, writer_port = free_port(), free_port()
    logs = {name: tmp_path / f"{name}.log" for name in ("collector", "writer")}
    argv = {
        "collector": ["collector", "--port", str(collector_port), "--device-rate", "0"],
        "writer": ["writer", "--metrics-port", str(writer_port), "--flush-age", "2",
                   "--group", f"e2e-{kafka_topic}"],
    }  # fmt: skip
    procs = {}
    for name, args in argv.items():
        with logs[name].open("wb") as out:
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", "robolake", *args], env=env, stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
    try:
        collector_url = f"http://127.0.0.1:{collector_port}"
        await _ready(f"{collector_url}/readyz", procs["collector"], logs["collector"])
        await _ready(f"http://127.0.0.1:{writer_port}/metrics", procs["writer"], logs["writer"])
        result = await simulate(
            SimulationConfig(
                collector_url=collector_url,
                devices_file=devices_file,
                spool_dir=tmp_path / "spool",
                capture_points=200,
                duration_s=12.0,
                rate_mb_s=10.0,
                episode_seconds=2.0,
            )
        )
        acknowledged = [(e, s, q) for e, s, q, _ in result.ledger]
        deadline = time.monotonic() + 120
        while True:
            audit = await asyncio.to_thread(audit_chunks, endpoints, acknowledged)
            if audit.missing == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(2)
        print(
            f"end to end: capture points={result.capture_points} "
            f"(uploaded {result.active_capture_points}) episodes={result.episodes_completed} "
            f"acknowledged chunks={audit.acknowledged} found={audit.found} "
            f"lost={audit.missing} duplicated rows={audit.duplicated_rows} "
            f"shard files={audit.shard_files} errors={result.errors}"
        )
        assert result.failed_episodes == 0
        assert result.active_capture_points > 100  # many points, not a handful
        assert audit.acknowledged == result.chunks > 0
        assert audit.missing == 0
        assert audit.duplicated_rows == 0
    finally:
        for name, proc in procs.items():
            if proc.poll() is None:
                proc.terminate()
            code = proc.wait(timeout=60)
            assert code == 0, f"{name} exited {code}:\n{logs[name].read_text()[-3000:]}"
