"""`make bench` in miniature, so the benchmark keeps working: every step runs, every figure is
measured (tiny sizes; the numbers mean nothing and are not asserted beyond being positive)."""

from __future__ import annotations

from pathlib import Path

from robolake.bench.__main__ import measure, render
from robolake.endpoints import Endpoints
from robolake.stack.stack import Stack


async def test_bench_smoke_measures_every_figure(
    stack_endpoints: Endpoints, local_stack: Stack, tmp_path: Path
) -> None:
    log4j = local_stack.state_dir / "kafka" / "log4j2.properties"
    report = await measure(stack_endpoints, tmp_path, log4j, smoke=True)
    print(render(report))
    figures = {row["figure"]: row for row in report["table"]}
    for name in (
        "Kafka ProducerPerformance MB/s",
        "Kafka ConsumerPerformance MB/s",
        "MinIO PUT MB/s",
        "collector MB/s (acked payload)",
        "writer MB/s (Kafka->Parquet->MinIO)",
        "e2e MB/s (at half max)",
    ):
        assert figures[name]["value"] > 0, figures[name]
    assert report["raw"]["e2e"]["failed_episodes"] == 0
