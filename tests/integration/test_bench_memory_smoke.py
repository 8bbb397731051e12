"""`make bench-memory` in miniature, so the benchmark keeps working: 20 episodes produced,
drained by a real writer, every row found in the shards (the memory figures of so small a drain
mean nothing and are only checked to be measured)."""

from __future__ import annotations

from pathlib import Path

from robolake.bench.writer_memory import Plan, measure_memory, render
from robolake.endpoints import Endpoints


async def test_bench_memory_smoke_drains_every_row(
    stack_endpoints: Endpoints, tmp_path: Path
) -> None:
    # A short flush age: the writer's default (60 s) would make the drain wait a minute.
    plan = Plan(episodes=20, flush_age_s=2.0, timeout_s=60.0)
    result = await measure_memory(stack_endpoints, tmp_path, plan)
    print(render(result))
    assert result["rows_ok"], (result["rows_produced"], result["rows_in_shards"])
    assert result["rows_produced"] > 0
    assert result["shard_files"] > 0
    assert result["vmhwm_mib"] >= result["peak_rss_mib"] > 0
    assert result["writer_exit_code"] == 0
