"""Long fault runs for ``make chaos``: outages of 30 s and a 1,000-capture-point soak.

Marked ``chaos``; ``make test`` leaves them out (they take minutes), ``make chaos`` runs them.
Every test ends with an accounting: acknowledged, stored, lost = 0, duplicated = 0, and every
service recovered without a manual step. ``ROBOLAKE_SOAK_SECONDS`` shortens the soak.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path

import pytest
from pipeline_harness import Pipeline

from robolake.bench.peers import process_tree
from robolake.capture.simulator import SimulationConfig, SimulationResult, simulate
from robolake.endpoints import Endpoints
from robolake.stack.process import ProcessRecord, rss_mib, stop
from robolake.stack.stack import Stack

pytestmark = pytest.mark.chaos


def _config(pipeline: Pipeline, tmp_path: Path, **overrides: float) -> SimulationConfig:
    values: dict[str, float] = {
        "capture_points": 100,
        "duration_s": 60.0,
        "rate_mb_s": 8.0,
        "episode_seconds": 2.0,
    }
    values.update(overrides)
    return SimulationConfig(
        collector_url=pipeline.collector_url,
        devices_file=pipeline.devices_file,
        spool_dir=tmp_path / "spool",
        capture_points=int(values["capture_points"]),
        duration_s=values["duration_s"],
        rate_mb_s=values["rate_mb_s"],
        episode_seconds=values["episode_seconds"],
    )


async def _outage(stack: Stack, component: str, after: float, seconds: float) -> None:
    await asyncio.sleep(after)
    record = ProcessRecord.from_json(stack._load()["components"][component])
    await asyncio.to_thread(stop, record, timeout=30, name=component)
    await asyncio.sleep(seconds)
    await asyncio.to_thread(stack.up)


def _account(name: str, result: SimulationResult, audit: object) -> None:
    print(
        f"{name}: tried episodes={result.episodes_started} acknowledged chunks={result.chunks} "
        f"stored={getattr(audit, 'found', '?')} lost={getattr(audit, 'missing', '?')} "
        f"duplicated rows={getattr(audit, 'duplicated_rows', '?')} retries={result.retries} "
        f"errors={result.errors}"
    )


@pytest.mark.parametrize("component", ["kafka", "minio"])
async def test_thirty_second_outage_under_load_loses_nothing(
    component: str,
    stack_endpoints: Endpoints,
    kafka_topic: str,
    s3_bucket: str,
    tmp_path: Path,
    local_stack: Stack,
) -> None:
    async with Pipeline(stack_endpoints, kafka_topic, s3_bucket, tmp_path) as pipeline:
        outage = asyncio.create_task(_outage(local_stack, component, after=10, seconds=30))
        result = await simulate(_config(pipeline, tmp_path))
        await outage
        audit = await pipeline.audit([(e, s, q) for e, s, q, _ in result.ledger], timeout=240)
    _account(f"{component} down 30 s", result, audit)
    assert result.failed_episodes == 0
    assert audit.missing == 0
    assert audit.duplicated_rows == 0


async def test_soak_1000_capture_points_memory_flat(
    stack_endpoints: Endpoints, kafka_topic: str, s3_bucket: str, tmp_path: Path
) -> None:
    seconds = float(os.environ.get("ROBOLAKE_SOAK_SECONDS", "600"))
    samples: dict[str, list[tuple[float, float]]] = {"collector": [], "writer": []}
    async with Pipeline(stack_endpoints, kafka_topic, s3_bucket, tmp_path) as pipeline:
        began = time.monotonic()

        async def sample() -> None:
            # Summed over each service's process tree: the collector runs with its default
            # --workers (a master of ~25 MiB and a worker per core), and a leak in any worker
            # must show; the master's PID alone would hide them.
            while True:
                for name, proc in pipeline.procs.items():
                    rss = sum(rss_mib(pid) for pid in process_tree(proc.pid))
                    samples[name].append((time.monotonic() - began, rss))
                await asyncio.sleep(5)

        sampler = asyncio.create_task(sample())
        result = await simulate(
            _config(pipeline, tmp_path, capture_points=1000, duration_s=seconds, rate_mb_s=10.0)
        )
        sampler.cancel()
        audit = await pipeline.audit([(e, s, q) for e, s, q, _ in result.ledger], timeout=300)
    _account(f"soak {seconds:.0f} s", result, audit)
    for name, points in samples.items():
        # Flat: the last third of the run holds no more memory than the middle third + 25 %
        # (plus 32 MiB of slack for allocator noise); a leak grows without bound.
        third = len(points) // 3
        middle = statistics.median(r for _, r in points[third : 2 * third])
        last = statistics.median(r for _, r in points[2 * third :])
        peak = max(r for _, r in points)
        print(
            f"  {name}: RSS median middle third {middle:.0f} MiB, last third {last:.0f} MiB, "
            f"peak {peak:.0f} MiB"
        )
        assert last <= middle * 1.25 + 32, (name, middle, last)
    assert result.failed_episodes == 0
    assert audit.missing == 0
    assert audit.duplicated_rows == 0
