"""`make bench` in miniature, so the benchmark keeps working: every step runs, every figure is
measured (tiny sizes; the numbers mean nothing and are not asserted beyond being positive)."""

from __future__ import annotations

from pathlib import Path

from robolake.bench.report import measure, render
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
        "collector MB/s acked, 1 process (uvloop)",
        "writer MB/s (Kafka->Parquet->MinIO)",
        "collector MB/s acked, --workers 2 (uvloop)",
        "e2e 20 points MB/s (asked 0.5 x max)",
        "e2e 20 points MB/s (asked 0.25 x max)",
    ):
        assert figures[name]["value"] > 0, figures[name]
    # The 1-process rows ran one process, the --workers row one master and its 2 workers.
    assert report["raw"]["collector_workers_2"]["workers"] == 2
    assert figures["collector MB/s, --workers 2 vs 1"]["ratio"] > 0
    # The drain ran once committing to the Iceberg tables and once without (the ratio's peer).
    assert report["raw"]["writer"]["record"] == "tables"
    assert report["raw"]["writer"]["table_commits"] > 0
    assert report["raw"]["writer_bucket"]["record"] == "bucket"
    assert figures["writer MB/s, Iceberg commits vs none"]["ratio"] > 0
    assert report["raw"]["writer"]["cpu_ms_per_mb"] > 0
    assert (
        report["raw"]["writer"]["table_commit_p99_ms"]
        >= report["raw"]["writer"]["table_commit_p50_ms"]
    )
    # Three writers shared the drain and the tables; every commit is counted.
    assert report["raw"]["writers_3"]["writers"] == 3
    assert report["raw"]["writers_3"]["table_commits"] > 0
    # With one elected committer (the default) nothing conflicts; each committing its own
    # is the comparison (its conflicts depend on timing, so they are only reported).
    assert report["raw"]["writers_3"]["table_commit_conflicts"] == 0
    assert report["raw"]["writers_3_own_commits"]["table_commits"] > 0
    assert figures["3 writers MB/s, elected vs each its own"]["ratio"] > 0
    # Readers and the exporter at scale: both readers read the same frames, every committed
    # file was counted and the query found what was generated (bench/lake.py raises if not).
    lake = report["raw"]["lake"]
    assert figures["reader frames/s, pinned tables vs listing"]["ratio"] > 0
    assert lake["reader_frames"] > 0
    assert (lake["files_small"], lake["files_large"]) == (100, 1_000)
    assert figures["exporter scan 1e+03 / 1e+02 files"]["value"] > 0
    assert lake["query_matches_small"] > 0
    assert lake["query_matches_large"] > 0
    assert figures["episode query 1e+04 / 1e+03 eps"]["value"] > 0
    assert report["raw"]["e2e"]["errors"] == {}, report["raw"]["e2e"]
    assert report["raw"]["e2e"]["chunks"] > 0
    assert len(report["raw"]["producer_sweep"]) >= 6
    assert all(point["mb_per_s"] > 0 for point in report["raw"]["producer_sweep"])
