"""One run of every benchmark, each figure next to its ceiling: what ``make bench`` prints.

The plan (sizes, durations) has a ``smoke`` variant so CI runs every step tiny and the benchmark
keeps working; the figures and their ratios come back as one JSON-ready report.
"""

from __future__ import annotations

import asyncio
import platform
import sys
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from robolake.bench import ceilings, clients, lake, scaling, validation
from robolake.bench.collector import collector_load
from robolake.bench.end_to_end import end_to_end
from robolake.bench.peers import bucket_totals
from robolake.bench.writer import writer_load
from robolake.collector.sink import LINGER_MS, MAX_BATCH_BYTES
from robolake.endpoints import Endpoints
from robolake.provision import TopicSpec, ensure_topics

RECORD_BYTES = 1024 * 1024
SHARD_BYTES = 64 * 1024 * 1024


def _plan(smoke: bool) -> dict[str, Any]:
    if smoke:
        return {
            "records": 40,
            "put_count": 2,
            "put_size": 8 << 20,
            "devices": 4,
            "collector_s": 3.0,
            "writer_mb": 15,
            "e2e_points": 20,
            "e2e_s": 5.0,
            "validation_repeats": 3,
            "sweep_records": 8,
        }
    return {
        "records": 1500,
        "put_count": 8,
        "put_size": SHARD_BYTES,
        "devices": 32,
        "collector_s": 20.0,
        "writer_mb": 2000,
        "e2e_points": 1000,
        "e2e_s": 60.0,
        "validation_repeats": 30,
        "sweep_records": 200,
    }


def say(message: str) -> None:
    print(f"--> {message}", file=sys.stderr, flush=True)


async def measure(endpoints: Endpoints, workdir: Path, log4j: Path, smoke: bool) -> dict[str, Any]:
    """Run every measurement against ``endpoints``; return the figures and ratios."""
    plan = _plan(smoke)
    topic = f"bench-ceiling-{uuid.uuid4().hex[:8]}"
    await ensure_topics(
        endpoints.kafka_bootstrap, [TopicSpec(topic, 8, {"max.message.bytes": str(8 << 20)})]
    )
    say(f"Kafka ProducerPerformance: {plan['records']} x {RECORD_BYTES >> 20} MiB records")
    producer = await asyncio.to_thread(
        ceilings.kafka_producer, endpoints, topic, RECORD_BYTES, plan["records"], str(log4j)
    )
    say("Kafka ConsumerPerformance")
    consumer = await asyncio.to_thread(
        ceilings.kafka_consumer, endpoints, topic, plan["records"], str(log4j)
    )
    say(f"MinIO PUT: {plan['put_count']} x {plan['put_size'] >> 20} MiB")
    put = await asyncio.to_thread(
        ceilings.minio_put,
        endpoints,
        f"bench-{uuid.uuid4().hex[:8]}",
        plan["put_size"],
        plan["put_count"],
    )
    say("client libraries: aiokafka vs confluent-kafka, minio vs pyarrow S3")
    libraries = await clients.compare(
        endpoints, topic, records=plan["records"] // 3 or 1, objects=plan["put_count"]
    )
    say(
        f"collector --workers 1: {plan['devices']} devices uploading "
        f"{RECORD_BYTES >> 20} MiB chunks"
    )
    collector = await collector_load(  # one process, the asyncio loop: the baseline
        endpoints,
        workdir,
        devices=plan["devices"],
        seconds=plan["collector_s"],
        chunk_bytes=RECORD_BYTES,
    )
    uvloop_figures = None
    try:
        import uvloop  # noqa: F401

        say("collector again with uvloop")
        uvloop_figures = await collector_load(
            endpoints,
            workdir,
            devices=plan["devices"],
            seconds=plan["collector_s"],
            chunk_bytes=RECORD_BYTES,
            event_loop="uvloop",
        )
    except ImportError:
        say("uvloop not installed; skipping the uvloop comparison")
    say("producer settings sweep (aiokafka, acks=all, 32 sends in flight)")
    sweep = await clients.producer_sweep(
        endpoints, topic, records=plan["sweep_records"], record_bytes=RECORD_BYTES, progress=say
    )
    loop = "uvloop" if uvloop_figures is not None else "asyncio"
    say(f"collector processes per core: one command, --workers 2 ({loop})")
    two = await scaling.collector_processes(  # what docs/capacity.md deploys per node
        endpoints,
        workdir,
        processes=1,
        workers=2,
        devices=plan["devices"],
        seconds=plan["collector_s"],
        chunk_bytes=RECORD_BYTES,
        event_loop=loop,
    )
    # What each drain left in its bucket (shards, table metadata), before the bucket is dropped.
    stored: dict[str, int] = {}

    def stored_as(name: str) -> Callable[[Endpoints], None]:
        def inspect(dataset: Endpoints) -> None:
            stored[name] = bucket_totals(dataset)[0]

        return inspect

    say(f"writer: draining {plan['writer_mb']} MB from a pre-filled topic")
    writer = await writer_load(
        endpoints,
        workdir,
        megabytes=plan["writer_mb"],
        chunk_bytes=RECORD_BYTES,
        inspect=stored_as("writer"),
    )
    say(f"writer without Iceberg commits (--record bucket): draining {plan['writer_mb']} MB")
    bucket_writer = await writer_load(
        endpoints,
        workdir,
        megabytes=plan["writer_mb"],
        chunk_bytes=RECORD_BYTES,
        record="bucket",
        inspect=stored_as("writer_bucket"),
    )
    say("readers and the exporter at scale (bench/lake.py)")
    lake_figures = await lake.lake_scale(endpoints, workdir, lake.plan(smoke), say)
    say(f"3 writers sharing the tables, one elected committer: draining {plan['writer_mb']} MB")
    writers3 = await writer_load(
        endpoints,
        workdir,
        megabytes=plan["writer_mb"],
        chunk_bytes=RECORD_BYTES,
        writers=3,
        inspect=stored_as("writers_3"),
    )
    say(f"3 writers, each committing its own (--committer process): {plan['writer_mb']} MB")
    writers3_own = await writer_load(
        endpoints,
        workdir,
        megabytes=plan["writer_mb"],
        chunk_bytes=RECORD_BYTES,
        writers=3,
        committer="process",
    )
    ratios = {
        name: stored.get(name, 0) / (figures.megabytes * 1e6) if figures.megabytes else 0.0
        for name, figures in (
            ("writer", writer),
            ("writer_bucket", bucket_writer),
            ("writers_3", writers3),
        )
    }
    # The maximum is the collector's closed-loop rate with its default event loop.
    best = uvloop_figures or collector
    maximum = best.mb_per_s
    runs = []
    for share in (0.5, 0.25):
        rate = max(1.0, maximum * share)
        say(f"end to end: {plan['e2e_points']} capture points at {rate:.1f} MB/s ({share} x max)")
        runs.append(
            await end_to_end(
                endpoints,
                workdir,
                capture_points=plan["e2e_points"],
                rate_mb_s=rate,
                seconds=plan["e2e_s"],
            )
        )
    e2e, e2e_quarter = runs
    rate = max(1.0, maximum * 0.5)
    say(f"collector and Kafka only (no writer): {plan['e2e_points']} points at {rate:.1f} MB/s")
    e2e_alone = await end_to_end(
        endpoints,
        workdir,
        capture_points=plan["e2e_points"],
        rate_mb_s=rate,
        seconds=plan["e2e_s"],
        with_writer=False,
    )
    say("chunk validation vs production")
    checks = validation.run(repeats=plan["validation_repeats"])
    storage_ceiling = min(consumer.mb_per_s, put.mb_per_s)
    rows = [
        ("Kafka ProducerPerformance MB/s", producer.mb_per_s, None, None, "ceiling"),
        ("Kafka ConsumerPerformance MB/s", consumer.mb_per_s, None, None, "ceiling"),
        ("MinIO PUT MB/s", put.mb_per_s, None, None, "ceiling"),
        ("collector MB/s, asyncio loop", collector.mb_per_s, None, None, ""),
        *(
            [
                (
                    "collector MB/s, uvloop",
                    uvloop_figures.mb_per_s,
                    collector.mb_per_s,
                    1.0,
                    ">= 1 x asyncio: adopt uvloop",
                )
            ]
            if uvloop_figures
            else []
        ),
        (
            f"collector MB/s acked, 1 process ({loop})",
            maximum,
            producer.mb_per_s,
            0.5,
            ">= 0.5 x producer",
        ),
        ("collector ack p50 ms (closed loop)", best.ack_p50_ms, None, None, ""),
        ("collector ack p99 ms (closed loop)", best.ack_p99_ms, None, None, ""),
        (
            f"collector MB/s acked, --workers 2 ({loop})",
            two.mb_per_s,
            producer.mb_per_s,
            0.5,
            ">= 0.5 x producer",
        ),
        (
            # No verdict: a second worker pays only when one loop queues (docs/operations.md,
            # "Collector workers": 1.37 x at 64 devices, 0.88 x at this bench's 32).
            "collector MB/s, --workers 2 vs 1",
            two.mb_per_s,
            maximum,
            0.0,
            "measured 1.37 x at 64 devices, 0.88 x at 32",
        ),
        (
            "writer MB/s (Kafka->Parquet->MinIO)",
            writer.mb_per_s,
            storage_ceiling,
            0.5,
            ">= 0.5 x min(consumer, PUT)",
        ),
        (
            "writer MB/s, Iceberg commits vs none",
            writer.mb_per_s,
            bucket_writer.mb_per_s,
            0.9,
            ">= 0.9 x the same writer, --record bucket",
        ),
        (
            "writer CPU ms per MB, Iceberg commits vs none",
            writer.cpu_ms_per_mb,
            bucket_writer.cpu_ms_per_mb,
            0.0,
            "",
        ),
        (
            "writer stored/offered bytes",
            ratios["writer"],
            None,
            None,
            "~1 on camera data (JPEG)",
        ),
        ("writer stored/offered, --record bucket", ratios["writer_bucket"], None, None, ""),
        ("writer table commit ms (mean)", writer.table_commit_mean_ms, None, None, ""),
        ("writer table commit ms p50", writer.table_commit_p50_ms, None, None, ""),
        ("writer table commit ms p99", writer.table_commit_p99_ms, None, None, ""),
        ("3 writers MB/s (one group, shared tables)", writers3.mb_per_s, None, None, ""),
        (
            "3 writers: conflicts per flush commit",
            writers3.table_commit_conflicts / max(1, writers3.table_commits),
            None,
            None,
            "one elected committer: 0",
        ),
        ("3 writers: table commit ms p99", writers3.table_commit_p99_ms, None, None, ""),
        (
            "3 writers committing their own: conflicts per flush commit",
            writers3_own.table_commit_conflicts / max(1, writers3_own.table_commits),
            None,
            None,
            "why one is elected",
        ),
        (
            "3 writers MB/s, elected vs each its own",
            writers3.mb_per_s,
            writers3_own.mb_per_s,
            0.0,
            "measured 1.0-1.05 x on a loaded machine",
        ),
        ("3 writers: stored/offered bytes", ratios["writers_3"], None, None, ""),
        ("writer start-up s (join, recovery)", writer.startup_s, None, None, ""),
        *lake.rows(lake_figures),
        (
            f"e2e {e2e.capture_points} points MB/s (asked 0.5 x max)",
            e2e.mb_per_s,
            maximum,
            0.0,
            "",
        ),
        (f"e2e {e2e.capture_points} points ack p99 ms", e2e.ack_p99_ms, 250.0, None, "< 250 ms"),
        ("e2e ack p50 ms", e2e.ack_p50_ms, None, None, ""),
        ("e2e load generator start lag p99 ms", e2e.start_lag_p99_ms, None, None, "small"),
        (
            f"e2e {e2e_quarter.capture_points} points MB/s (asked 0.25 x max)",
            e2e_quarter.mb_per_s,
            maximum,
            0.0,
            "",
        ),
        ("e2e ack p99 ms at 0.25 x max", e2e_quarter.ack_p99_ms, 250.0, None, "< 250 ms"),
        (
            "ack p99 ms at 0.5 x max, no writer on host",
            e2e_alone.ack_p99_ms,
            250.0,
            None,
            "< 250 ms",
        ),
        (
            "collector peak RSS MiB (no writer)",
            e2e_alone.collector_rss_mib,
            300.0,
            None,
            "< 300 MiB",
        ),
        ("collector peak RSS MiB (e2e)", e2e.collector_rss_mib, 300.0, None, "< 300 MiB"),
        (
            "writer peak RSS MiB (e2e)",
            e2e.writer_rss_mib,
            e2e.writer_buffer_cap_mib + 300,
            None,
            "< buffer cap + 300 MiB",
        ),
        (
            "writer peak RSS MiB (drain)",
            writer.peak_rss_mib,
            writer.buffer_cap_mib + 300,
            None,
            "< buffer cap + 300 MiB",
        ),
    ]
    by_name = {figure.name: figure.mb_per_s for figure in libraries}
    for name, baseline in (
        ("confluent-kafka producer", "aiokafka producer"),
        ("pyarrow S3FileSystem", "minio put_object"),
    ):
        if name in by_name:
            rows.append((f"{baseline} MB/s", by_name[baseline], None, None, "in use"))
            rows.append(
                (
                    f"{name} MB/s",
                    by_name[name],
                    by_name[baseline],
                    1.5,
                    f"switch if >= 1.5 x {baseline}",
                )
            )
    sweep_base = next(
        (
            f
            for f in sweep
            if (f.linger_ms, f.max_batch_size, f.compression)
            == (LINGER_MS, MAX_BATCH_BYTES, "none")
        ),
        None,
    )
    for point in sweep:
        in_use = sweep_base is not None and point == sweep_base
        rows.append(
            (
                f"producer linger {point.linger_ms} ms batch {point.max_batch_size >> 10} KiB"
                f"{' ' + point.compression if point.compression != 'none' else ''} MB/s",
                point.mb_per_s,
                sweep_base.mb_per_s if sweep_base is not None and not in_use else None,
                None if in_use or sweep_base is None else 0.0,
                f"{'in use (collector), ' if in_use else ''}p99 ack {point.ack_p99_ms:.0f} ms",
            )
        )
    for check in checks:
        rows.append((f"validate/produce {check.chunk} 4 MiB", check.ratio, None, None, "small"))
    table = []
    for name, value, ceiling, minimum, target in rows:
        ratio = value / ceiling if ceiling and minimum is not None else None
        # A verdict only for rows with a target ("<" or ">="); the rest just show their ratio.
        if not target.startswith(("<", ">=")):
            met: bool | None = None
        elif minimum is not None:
            met = ratio is not None and ratio >= minimum
        elif ceiling is not None:
            met = value < ceiling
        else:
            met = None
        table.append(
            {
                "figure": name,
                "value": round(value, 3),
                "ceiling": round(ceiling, 3) if ceiling else None,
                "ratio": round(ratio, 3) if ratio is not None else None,
                "target": target,
                "met": met,
            }
        )
    return {
        "smoke": smoke,
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "table": table,
        "raw": {
            "producer": asdict(producer),
            "consumer": asdict(consumer),
            "put": asdict(put),
            "collector": asdict(collector),
            "collector_uvloop": asdict(uvloop_figures) if uvloop_figures else None,
            "writer": asdict(writer),
            "writer_bucket": asdict(bucket_writer),
            "writers_3": asdict(writers3),
            "writers_3_own_commits": asdict(writers3_own),
            "stored_bytes": stored,
            "lake": asdict(lake_figures),
            "collector_workers_2": asdict(two),
            "producer_sweep": [asdict(p) for p in sweep],
            "e2e": asdict(e2e),
            "e2e_quarter": asdict(e2e_quarter),
            "e2e_no_writer": asdict(e2e_alone),
            "validation": [asdict(c) for c in checks],
            "libraries": [asdict(f) for f in libraries],
        },
    }


def render(report: dict[str, Any]) -> str:
    """The table as text."""
    lines = [f"{'figure':<40} {'value':>10} {'ceiling':>10} {'ratio':>7}  target", "-" * 96]
    for row in report["table"]:
        mark = {True: "met", False: "MISSED", None: ""}[row["met"]]
        ceiling = f"{row['ceiling']:.1f}" if row["ceiling"] is not None else ""
        ratio = f"{row['ratio']:.2f}" if row["ratio"] is not None else ""
        lines.append(
            f"{row['figure']:<40} {row['value']:>10.2f} {ceiling:>10} {ratio:>7}  "
            f"{row['target']} {mark}".rstrip()
        )
    return "\n".join(lines)
