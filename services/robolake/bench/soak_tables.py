"""Sustained run of the table layout (``make soak-tables``): does compaction keep the average
data file within 2x of the target while writers keep appending?

One run, on a stack of its own or the caller's:

1. a fresh bucket and namespace with every table created (as ``robolake init`` does), and a
   topic of its own whose retention is minutes, not days (the writer reads it within seconds;
   a day of retention at the run's rate would fill the disk before the bucket does);
2. a collector, a writer (``--record auto``: tables) and ``robolake compact --interval N`` as a
   service with snapshot expiry and orphan removal in its cycle, each a real process;
3. the demo's and the chaos soak's load generator (:func:`robolake.capture.simulator.simulate`)
   uploading episodes at a steady rate, with its ledger of acknowledged chunks;
4. once the load stops: the demo's accounting (:func:`robolake.dataset.audit.audit_chunks`)
   until every acknowledged chunk is in the tables, then two more maintenance cycles (the second
   one began after the drain, so it saw every file), then the accounting again (compaction must
   lose and duplicate nothing);
5. the figures per table (files, average size, the ideal, within 2x?), compaction's bytes/s,
   cycles and conflicts, the writer's conflicts, snapshots retained, bytes in the bucket against
   bytes the tables reference, CPU and disk, as one table on stdout and JSON.

**Open partitions.** In a run of an hour every row lands in today's ``date`` partition, which
the writer keeps appending to; compaction's defaults leave exactly that partition alone
(``--grace-days 1``, ``--min-age 3600``). The run compacts it anyway, with ``--grace-days 0
--min-age 0``: the production question it answers is whether compaction converges on a
partition that is being written (a day of a busy deployment is such a partition for 24 hours),
and whether the conflicts with the writer's commits are retried without losing a row. The cost
of the choice -- rewriting the still-growing remainder each cycle -- is measured, not hidden:
bytes rewritten against bytes ingested (write amplification).

**Within 2x.** A table's ideal is ``ceil(total / target)`` files of ``total / that`` bytes
each: a table holding less than the target ideally has one file, not one of the target's size.
Its average is within 2x when ``ideal / 2 <= average <= 2 * target``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from prometheus_client.parser import text_string_to_metric_families

from robolake.bench.harness import Service, bench_env, fresh_dataset
from robolake.capture.simulator import SimulationConfig, SimulationResult, simulate
from robolake.dataset.audit import ChunkAudit, audit_chunks
from robolake.endpoints import Endpoints
from robolake.episode.stream_types import default_registry
from robolake.episode.topics import MAX_RECORD_BYTES
from robolake.lake import layout
from robolake.lake.catalog import LakeTables
from robolake.lake.maintenance import Bucket, Maintenance, partitions
from robolake.lake.schema import TARGET_FILE_BYTES
from robolake.provision import TopicSpec, ensure_bucket, ensure_topics
from robolake.stack.process import cpu_seconds, free_port

MIB = 1024 * 1024
#: ``robolake compact``'s log line for a committed partition (lake/maintenance.py).
_COMPACTED = re.compile(
    r"(?P<table>\S+) date=\S+: (?P<files_in>\d+) files \((?P<bytes_in>\d+) bytes\) -> "
    r"(?P<files_out>\d+) files \((?P<bytes_out>\d+) bytes\), \d+ rows, in one snapshot \S+ "
    r"\((?P<seconds>[\d.]+) s, (?P<conflicts>\d+) conflicts\)"
)
_CYCLES = re.compile(r"maintenance stopped after (\d+) cycles")


@dataclass(frozen=True)
class SoakSettings:
    """What a sustained run runs. The defaults are the one-hour run's (docs/maintenance.md)."""

    seconds: float = 3600.0
    #: Aggregate upload rate. 5 MB/s is what the 2-core machine, shared with other benchmarks,
    #: sustains for an hour beside compaction (a 5-minute trial at 5.8 MB/s kept up with the
    #: machine at 95 % busy), and 18 GB an hour keeps the disk peak far below 25 GB (the
    #: tables hold a quarter of it, the topic keeps minutes).
    rate_mb_s: float = 5.0
    capture_points: int = 100
    episode_seconds: float = 5.0
    partitions: int = 4
    #: Seconds between two maintenance cycles (docs/maintenance.md's service example): on a
    #: partition being written each cycle rewrites the growing remainder, so write
    #: amplification is about target / (2 x what a table gains per interval).
    interval_s: float = 300.0
    target_file_bytes: int = TARGET_FILE_BYTES
    #: Snapshot and orphan retentions of the run: minutes, so replaced files leave the disk
    #: within the run; the orphan retention is still far longer than a flush or a commit.
    snapshot_retention_s: float = 120.0
    orphan_retention_s: float = 300.0
    #: The topic's retention (``retention.ms``) and segment size, so Kafka deletes what the
    #: writer has long consumed.
    topic_retention_s: float = 600.0
    topic_segment_bytes: int = 16 * MIB
    sample_s: float = 30.0
    drain_timeout_s: float = 900.0
    writer_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableFigures:
    """One table's current snapshot against its ideal."""

    table: str
    data_files: int
    records: int
    bytes: int
    snapshots: int
    average_file_bytes: float
    target_file_bytes: int
    #: ``ceil(bytes / target)`` files (at least one), of ``ideal_file_bytes`` each.
    ideal_files: int
    ideal_file_bytes: float
    #: None for an empty table (a stream type the load does not record): nothing to judge.
    within_2x: bool | None


def table_figures(
    name: str, files: int, records: int, size: int, snapshots: int, target: int
) -> TableFigures:
    """The figures of a table holding ``files`` data files of ``size`` bytes in all."""
    ideal_files = max(1, math.ceil(size / target))
    ideal = size / ideal_files
    average = size / files if files else 0.0
    return TableFigures(
        table=name,
        data_files=files,
        records=records,
        bytes=size,
        snapshots=snapshots,
        average_file_bytes=average,
        target_file_bytes=target,
        ideal_files=ideal_files,
        ideal_file_bytes=ideal,
        within_2x=ideal / 2 <= average <= 2 * target if files else None,
    )


def tables_now(endpoints: Endpoints, target: int) -> list[TableFigures]:
    """Every table of the namespace from its current snapshot's summary (no listing)."""
    from robolake.lake.status import status

    return [
        table_figures(s.name, s.data_files, s.records, s.bytes, s.snapshots, target)
        for s in status(LakeTables.from_endpoints(endpoints))
    ]


@dataclass(frozen=True)
class StorageFigures:
    """Bytes in the bucket against the bytes the tables' retained snapshots reference."""

    bucket_objects: int
    bucket_bytes: int
    #: Referenced by a retained snapshot (time travel keeps replaced files until expiry).
    referenced_bytes: int
    #: Data files of the current snapshots only.
    live_data_bytes: int
    #: Unreferenced objects under the tables' locations and writer checkpoints no snapshot
    #: names: young (the last orphan pass had to keep them: younger than the retention), and
    #: old (that pass should have removed them: left behind, a bug).
    orphan_bytes_young: int
    orphan_bytes_old: int
    orphan_objects_young: int
    orphan_objects_old: int
    #: Everything else in the bucket (the listing layout's prefixes; none in a fresh run).
    other_bytes: int


#: How long an orphan pass may take: an object that turned orphan this much before the pass's
#: cutoff may still have been young when the pass looked at it.
ORPHAN_PASS_SLACK_S = 60.0


def storage_figures(
    endpoints: Endpoints, orphan_retention_s: float, last_pass: float
) -> StorageFigures:
    """List the bucket once and resolve every table's references, as orphan removal does.

    "Old" orphans are those the last orphan pass (ended at Unix time ``last_pass``) should have
    removed: older than the retention then, with :data:`ORPHAN_PASS_SLACK_S` for the pass's own
    duration; younger ones wait for the next pass, as they should.
    """
    maintenance = Maintenance.from_endpoints(endpoints)
    bucket = Bucket(endpoints)
    stored = list(bucket.list(""))
    referenced: set[str] = set()
    locations: list[str] = []
    live = 0
    for name in maintenance.tables.names():
        table = maintenance.tables.load(name)
        locations.append(layout.key_of(table.location(), endpoints.s3_bucket).rstrip("/") + "/")
        referenced |= maintenance.referenced(table)
        live += sum(f.size for p in partitions(table) for f in p.files)
    referenced |= maintenance._named_checkpoints()
    cutoff = dt.datetime.fromtimestamp(last_pass - orphan_retention_s - ORPHAN_PASS_SLACK_S, dt.UTC)
    young = old = young_n = old_n = ref = other = 0
    for obj in stored:
        if obj.key in referenced:
            ref += obj.size
        elif any(obj.key.startswith(p) for p in locations) or obj.key.startswith(
            layout.CHECKPOINT_ROOT
        ):
            if obj.modified >= cutoff:
                young, young_n = young + obj.size, young_n + 1
            else:
                old, old_n = old + obj.size, old_n + 1
        else:
            other += obj.size
    return StorageFigures(
        bucket_objects=len(stored),
        bucket_bytes=sum(o.size for o in stored),
        referenced_bytes=ref,
        live_data_bytes=live,
        orphan_bytes_young=young,
        orphan_bytes_old=old,
        orphan_objects_young=young_n,
        orphan_objects_old=old_n,
        other_bytes=other,
    )


# -- sampling ------------------------------------------------------------------------------------


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from ``/proc/stat``."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def _du_bytes(paths: Sequence[Path]) -> int:
    """Bytes on disk under ``paths`` (``du``: what the disk really holds)."""
    existing = [str(p) for p in paths if p.exists()]
    if not existing:
        return 0
    done = subprocess.run(
        ["du", "-sb", "--", *existing], capture_output=True, text=True, check=False, timeout=120
    )
    return sum(int(line.split()[0]) for line in done.stdout.splitlines() if line.strip())


@dataclass
class Sample:
    """One point of the run's time series."""

    at_s: float
    machine_cpu: float
    cpu_cores: dict[str, float]
    disk_bytes: int
    tables: dict[str, tuple[int, int]]  # table -> (files, bytes)


@dataclass
class Sampler:
    """CPU (machine and per process), disk and the tables' files, every ``interval_s``."""

    endpoints: Endpoints
    pids: Mapping[str, int]
    disk: Sequence[Path]
    interval_s: float
    out: TextIO
    samples: list[Sample] = field(default_factory=list)
    began: float = field(default_factory=time.monotonic)

    async def run(self, stop: asyncio.Event) -> None:
        last = time.monotonic()
        busy, total = _machine_ticks()
        cpu = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval_s)
            now = time.monotonic()
            busy2, total2 = _machine_ticks()
            cpu2 = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
            span = max(now - last, 1e-9)
            cores = {n: round((cpu2[n] - cpu.get(n, 0.0)) / span, 3) for n in cpu2}
            try:
                tables = await asyncio.to_thread(tables_now, self.endpoints, 1)
            except Exception:  # a sample is best effort, the run goes on
                tables = []
            disk = await asyncio.to_thread(_du_bytes, self.disk)
            sample = Sample(
                at_s=round(now - self.began, 1),
                machine_cpu=round((busy2 - busy) / max(total2 - total, 1), 3),
                cpu_cores=cores,
                disk_bytes=disk,
                tables={t.table: (t.data_files, t.bytes) for t in tables},
            )
            self.samples.append(sample)
            files = sum(f for f, _ in sample.tables.values())
            size = sum(b for _, b in sample.tables.values())
            self.out.write(
                f"[{sample.at_s:7.0f}s] machine CPU {sample.machine_cpu * 100:3.0f}%  "
                f"tables {files:5d} files {size / 1e9:7.2f} GB  disk {disk / 1e9:6.2f} GB  "
                + " ".join(f"{n} {c:.2f}" for n, c in sorted(cores.items()))
                + "\n"
            )
            self.out.flush()
            last, busy, total, cpu = now, busy2, total2, cpu2


# -- metrics and logs ----------------------------------------------------------------------------


def scrape(url: str) -> dict[str, float]:
    """A Prometheus endpoint's samples as ``name{label="v",...}`` -> value."""
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
        text = response.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            values[f"{s.name}{{{labels}}}" if labels else s.name] = float(s.value)
    return values


def _total(values: Mapping[str, float], name: str) -> float:
    """The sum of a metric over its labels."""
    return sum(v for k, v in values.items() if k == name or k.startswith(name + "{"))


@dataclass(frozen=True)
class CompactionFigures:
    """What ``robolake compact`` did, from its log and metrics."""

    cycles: int
    partitions_committed: int
    files_in: int
    files_out: int
    bytes_in: int
    bytes_out: int
    #: Seconds spent reading, rewriting, uploading and committing the partitions.
    busy_s: float
    #: Bytes rewritten per second while compacting, and over the whole run.
    busy_bytes_per_s: float
    run_bytes_per_s: float
    #: Bytes compaction wrote per byte the tables hold at the end (its write amplification).
    amplification: float
    conflicts: int
    failures: int
    expired_snapshots: int
    orphans_removed: int
    orphan_bytes_removed: int


def compaction_figures(
    log_text: str, metrics: Mapping[str, float], run_s: float, table_bytes: int
) -> CompactionFigures:
    done = [m.groupdict() for m in _COMPACTED.finditer(log_text)]
    cycles = [int(c) for c in _CYCLES.findall(log_text)]
    busy = sum(float(d["seconds"]) for d in done)
    bytes_in = sum(int(d["bytes_in"]) for d in done)
    bytes_out = sum(int(d["bytes_out"]) for d in done)
    return CompactionFigures(
        cycles=cycles[-1] if cycles else 0,
        partitions_committed=len(done),
        files_in=sum(int(d["files_in"]) for d in done),
        files_out=sum(int(d["files_out"]) for d in done),
        bytes_in=bytes_in,
        bytes_out=bytes_out,
        busy_s=round(busy, 1),
        busy_bytes_per_s=bytes_in / busy if busy else 0.0,
        run_bytes_per_s=bytes_in / run_s if run_s else 0.0,
        amplification=bytes_out / table_bytes if table_bytes else 0.0,
        conflicts=int(_total(metrics, "robolake_maintenance_commit_conflicts_total")),
        failures=int(_total(metrics, "robolake_maintenance_failures_total")),
        expired_snapshots=int(_total(metrics, "robolake_maintenance_expired_snapshots_total")),
        orphans_removed=int(_total(metrics, "robolake_maintenance_orphan_files_removed_total")),
        orphan_bytes_removed=int(
            _total(metrics, "robolake_maintenance_orphan_bytes_removed_total")
        ),
    )


def _last_cycle_end(metrics: Mapping[str, float]) -> float:
    """When the last cycle's final task (orphan removal) succeeded (Unix time, 0: never)."""
    return metrics.get('robolake_maintenance_last_success_timestamp_seconds{task="orphans"}', 0.0)


# -- the run -------------------------------------------------------------------------------------


@dataclass
class SoakReport:
    """Everything a sustained run measured (written as JSON)."""

    settings: dict[str, Any]
    load: dict[str, Any]
    tables_at_load_end: list[TableFigures]
    tables: list[TableFigures]
    compaction: CompactionFigures
    writer_conflicts: int
    writer_fenced: int
    storage: StorageFigures
    acknowledged: int
    in_tables: int
    lost: int
    duplicated_rows: int
    audit_before_final_cycles: dict[str, int]
    peak_disk_bytes: int
    cpu_cores_mean: dict[str, float]
    machine_cpu_mean: float
    peak_rss_mib: dict[str, float]
    seconds: float
    samples: list[Sample] = field(repr=False)

    @property
    def passed(self) -> bool:
        """Every table within 2x, nothing lost or duplicated, no orphan left past retention."""
        return (
            all(t.within_2x is not False for t in self.tables)
            and self.lost == 0
            and self.duplicated_rows == 0
            and self.storage.orphan_bytes_old == 0
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = self.passed
        return data


async def _audit_until_complete(
    endpoints: Endpoints, acknowledged: list[tuple[str, str, int]], within_s: float
) -> ChunkAudit:
    """The demo's accounting, repeated until every acknowledged chunk is in (or the timeout)."""
    deadline = time.monotonic() + within_s
    while True:
        audit = await asyncio.to_thread(audit_chunks, endpoints, acknowledged)
        if audit.missing == 0 or time.monotonic() > deadline:
            return audit
        await asyncio.sleep(5)


async def _cycles_after(url: str, since: float, cycles: int, within_s: float) -> None:
    """Wait until ``cycles`` maintenance cycles ended after ``since``: the last of them began
    after it, so it saw every file committed before."""
    deadline = time.monotonic() + within_s
    seen = since
    ended = 0
    while ended < cycles:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{ended} of {cycles} maintenance cycles ended in {within_s:.0f} s")
        end = _last_cycle_end(await asyncio.to_thread(scrape, url))
        if end > seen:
            seen, ended = end, ended + 1
        else:
            await asyncio.sleep(2)


def _compact_argv(settings: SoakSettings, port: int) -> list[str]:
    return [
        "compact",
        "--interval", str(settings.interval_s),
        "--metrics-host", "127.0.0.1",
        "--metrics-port", str(port),
        "--target-file-size", str(settings.target_file_bytes),
        "--grace-days", "0",
        "--min-age", "0",
        "--expire", "--snapshot-retention", str(settings.snapshot_retention_s),
        "--remove-orphans", "--orphan-retention", str(settings.orphan_retention_s),
    ]  # fmt: skip


async def soak(
    endpoints: Endpoints,
    workdir: Path,
    settings: SoakSettings,
    *,
    disk: Sequence[Path] = (),
    stack_pids: Mapping[str, int] | None = None,
    out: TextIO = sys.stdout,
) -> SoakReport:
    """One sustained run against the stack at ``endpoints``, in a bucket and namespace of its
    own. ``disk``: directories whose size is the run's disk use (the stack's data);
    ``stack_pids``: the stack's processes, whose CPU is sampled with robolake's own."""
    began = time.monotonic()
    topic = f"soak-{uuid.uuid4().hex[:8]}"
    await ensure_topics(
        endpoints.kafka_bootstrap,
        [
            TopicSpec(
                topic,
                settings.partitions,
                {
                    "max.message.bytes": str(MAX_RECORD_BYTES),
                    "retention.ms": str(int(settings.topic_retention_s * 1000)),
                    "segment.bytes": str(settings.topic_segment_bytes),
                },
            )
        ],
    )
    dataset = fresh_dataset(endpoints, "soak")
    ensure_bucket(dataset)
    await asyncio.to_thread(LakeTables.from_endpoints(dataset).ensure_all, default_registry())
    devices_file = workdir / "devices.json"
    env = bench_env(dataset, topic, devices_file)
    port, writer_port, compact_port = free_port(), free_port(), free_port()
    out.write(
        f"==> sustained run: {settings.seconds:.0f} s at {settings.rate_mb_s:g} MB/s from "
        f"{settings.capture_points} capture points; bucket {dataset.s3_bucket}, topic {topic}; "
        f"compaction every {settings.interval_s:.0f} s to {settings.target_file_bytes} bytes; "
        f"logs in {workdir}\n"
    )
    services = {
        # One process (no master): the sampler reads CPU, and Service RSS, by this PID, and
        # the run is about tables and compaction, so a second worker would only take memory.
        "collector": Service.start(
            ["collector", "--port", str(port), "--device-rate", "0", "--workers", "1"],
            env,
            workdir / "collector.log",
        ),
        "writer": Service.start(
            [
                "writer",
                "--metrics-port",
                str(writer_port),
                "--group",
                f"soak-{topic}",
                *settings.writer_args,
            ],
            env,
            workdir / "writer.log",
        ),
        "compact": Service.start(
            _compact_argv(settings, compact_port), env, workdir / "compact.log"
        ),
    }
    collector_url = f"http://127.0.0.1:{port}"
    writer_url = f"http://127.0.0.1:{writer_port}/metrics"
    compact_url = f"http://127.0.0.1:{compact_port}/metrics"
    stop = asyncio.Event()
    pids = {name: s.process.pid for name, s in services.items()}
    pids["load"] = os.getpid()
    pids.update({f"stack:{n}": p for n, p in (stack_pids or {}).items()})
    sampler = Sampler(dataset, pids, disk, settings.sample_s, out)
    sampling: asyncio.Task[None] | None = None
    try:
        await services["collector"].ready(f"{collector_url}/readyz")
        await services["writer"].ready(writer_url)
        await services["compact"].ready(compact_url)
        for service in services.values():
            service.watch()
        sampling = asyncio.create_task(sampler.run(stop))
        config = SimulationConfig(
            collector_url=collector_url,
            devices_file=devices_file,
            spool_dir=workdir / "spool",
            capture_points=settings.capture_points,
            duration_s=settings.seconds,
            rate_mb_s=settings.rate_mb_s,
            episode_seconds=settings.episode_seconds,
        )
        with (workdir / "load.log").open("w") as load_log:
            result: SimulationResult = await simulate(config, out=load_log)
        out.write(result.render() + "\n")
        acknowledged = [(e, s, q) for e, s, q, _ in result.ledger]
        for service in services.values():
            service.process.check()
        out.write(f"==> waiting until all {len(acknowledged)} acknowledged chunks are in\n")
        first = await _audit_until_complete(dataset, acknowledged, settings.drain_timeout_s)
        drained = time.time()
        at_load_end = await asyncio.to_thread(tables_now, dataset, settings.target_file_bytes)
        out.write("==> drained; waiting for two maintenance cycles that end after the drain\n")
        await _cycles_after(
            compact_url, drained, 2, within_s=4 * settings.interval_s + settings.drain_timeout_s
        )
        final = await asyncio.to_thread(audit_chunks, dataset, acknowledged)
        tables = await asyncio.to_thread(tables_now, dataset, settings.target_file_bytes)
        writer_metrics = await asyncio.to_thread(scrape, writer_url)
        compact_metrics = await asyncio.to_thread(scrape, compact_url)
        storage = await asyncio.to_thread(
            storage_figures,
            dataset,
            settings.orphan_retention_s,
            _last_cycle_end(compact_metrics),
        )
    finally:
        stop.set()
        if sampling is not None:
            await sampling
        for service in services.values():
            await service.stop()
    seconds = time.monotonic() - began
    table_bytes = sum(t.bytes for t in tables)
    compaction = compaction_figures(
        services["compact"].process.log(), compact_metrics, result.seconds, table_bytes
    )
    samples = sampler.samples
    names = sorted({n for s in samples for n in s.cpu_cores})
    return SoakReport(
        settings={k: v for k, v in asdict(settings).items()},
        load=result.to_json(),
        tables_at_load_end=at_load_end,
        tables=tables,
        compaction=compaction,
        writer_conflicts=int(
            _total(writer_metrics, "robolake_writer_table_commit_conflicts_total")
        ),
        writer_fenced=int(_total(writer_metrics, "robolake_writer_fenced_total")),
        storage=storage,
        acknowledged=final.acknowledged,
        in_tables=final.found,
        lost=final.missing,
        duplicated_rows=final.duplicated_rows,
        audit_before_final_cycles={
            "found": first.found,
            "missing": first.missing,
            "duplicated_rows": first.duplicated_rows,
        },
        peak_disk_bytes=max((s.disk_bytes for s in samples), default=0),
        cpu_cores_mean={
            n: round(sum(s.cpu_cores.get(n, 0.0) for s in samples) / len(samples), 3) for n in names
        },
        machine_cpu_mean=round(sum(s.machine_cpu for s in samples) / len(samples), 3)
        if samples
        else 0.0,
        peak_rss_mib={n: round(s.peak_rss_mib, 1) for n, s in services.items()},
        seconds=round(seconds, 1),
        samples=samples,
    )


# -- the report ----------------------------------------------------------------------------------


def _verdict(within: bool | None) -> str:
    return "-" if within is None else "yes" if within else "NO"


def render(report: SoakReport) -> str:
    """One summary table, then the run's other figures."""
    mb = 1e6
    lines = [
        f"{'table':<22} {'files':>6} {'total MB':>10} {'avg MB':>8} {'ideal MB':>9} "
        f"{'target MB':>9} {'within 2x':>9}   (at load end: files, avg MB)"
    ]
    before = {t.table: t for t in report.tables_at_load_end}
    for t in report.tables:
        b = before.get(t.table)
        lines.append(
            f"{t.table:<22} {t.data_files:>6} {t.bytes / mb:>10.1f} "
            f"{t.average_file_bytes / mb:>8.1f} {t.ideal_file_bytes / mb:>9.1f} "
            f"{t.target_file_bytes / mb:>9.1f} {_verdict(t.within_2x):>9}"
            + (f"   ({b.data_files}, {b.average_file_bytes / mb:.1f})" if b else "")
        )
    c, s = report.compaction, report.storage
    load = report.load
    lines += [
        "",
        f"load          {load['bytes'] / 1e9:.2f} GB in {load['seconds']:.0f} s = "
        f"{load['mb_per_s']:.2f} MB/s, {load['episodes_completed']} episodes, "
        f"errors {load['errors'] or 'none'}",
        f"accounting    acknowledged chunks {report.acknowledged}, in the tables "
        f"{report.in_tables}, lost {report.lost}, duplicated rows {report.duplicated_rows}",
        f"compaction    {c.cycles} cycles, {c.partitions_committed} partition commits, "
        f"{c.files_in} -> {c.files_out} files, {c.bytes_in / 1e9:.2f} GB rewritten at "
        f"{c.busy_bytes_per_s / mb:.1f} MB/s while busy ({c.busy_s:.0f} s), "
        f"{c.run_bytes_per_s / mb:.2f} MB/s over the run; written/held {c.amplification:.2f}x",
        f"conflicts     writer {report.writer_conflicts} (fenced {report.writer_fenced}), "
        f"compaction {c.conflicts}; compaction failures {c.failures}",
        f"snapshots     {sum(t.snapshots for t in report.tables)} retained over "
        f"{len(report.tables)} tables; {c.expired_snapshots} expired during the run",
        f"bucket        {s.bucket_bytes / 1e9:.2f} GB in {s.bucket_objects} objects, "
        f"referenced {s.referenced_bytes / 1e9:.2f} GB (live data "
        f"{s.live_data_bytes / 1e9:.2f} GB, the rest retained snapshots' files and metadata); "
        "orphans younger than the retention "
        f"{s.orphan_bytes_young / 1e9:.2f} GB ({s.orphan_objects_young}), older "
        f"{s.orphan_bytes_old / 1e9:.2f} GB ({s.orphan_objects_old}); removed during the run "
        f"{c.orphans_removed} ({c.orphan_bytes_removed / 1e9:.2f} GB)",
        f"machine       CPU {report.machine_cpu_mean * 100:.0f}% of 2 cores on average; "
        "cores per process "
        + ", ".join(f"{n} {v:.2f}" for n, v in sorted(report.cpu_cores_mean.items())),
        "              peak RSS "
        + ", ".join(f"{n} {v:.0f} MiB" for n, v in sorted(report.peak_rss_mib.items()))
        + f"; peak disk {report.peak_disk_bytes / 1e9:.1f} GB",
        f"result        {'PASS' if report.passed else 'FAIL'} in {report.seconds:.0f} s",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m robolake.bench.soak_tables",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = SoakSettings()
    parser.add_argument("--minutes", type=float, default=defaults.seconds / 60,
                        help="minutes of load (default 60)")  # fmt: skip
    parser.add_argument("--rate", type=float, default=defaults.rate_mb_s,
                        help="aggregate upload MB/s (default 5)")  # fmt: skip
    parser.add_argument("--capture-points", type=int, default=defaults.capture_points)
    parser.add_argument("--interval", type=float, default=defaults.interval_s,
                        help="seconds between maintenance cycles (default 300)")  # fmt: skip
    parser.add_argument("--target-file-size", type=int, default=defaults.target_file_bytes,
                        metavar="BYTES", help="compaction's target (default 512 MiB)")  # fmt: skip
    parser.add_argument("--snapshot-retention", type=float,
                        default=defaults.snapshot_retention_s, metavar="SECONDS")  # fmt: skip
    parser.add_argument("--orphan-retention", type=float,
                        default=defaults.orphan_retention_s, metavar="SECONDS")  # fmt: skip
    parser.add_argument("--topic-retention", type=float, default=defaults.topic_retention_s,
                        metavar="SECONDS",
                        help="the topic's retention.ms, in seconds (default 600)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("bench-results/soak-tables.json"))
    parser.add_argument(
        "--state-dir", type=Path, default=None,
        help="use the stack in this state directory (started if down, left running); default: "
        "a private stack in ~/.local/state/robolake/soak-stack, stopped and deleted afterwards",
    )  # fmt: skip
    args = parser.parse_args(argv)
    from robolake.stack.paths import default_state_dir
    from robolake.stack.stack import Stack

    settings = SoakSettings(
        seconds=args.minutes * 60,
        rate_mb_s=args.rate,
        capture_points=args.capture_points,
        interval_s=args.interval,
        target_file_bytes=args.target_file_size,
        snapshot_retention_s=args.snapshot_retention,
        orphan_retention_s=args.orphan_retention,
        topic_retention_s=args.topic_retention,
    )
    state = args.state_dir or default_state_dir().with_name("soak-stack")
    stack = Stack(state)
    endpoints = stack.up(progress=lambda m: print(f"    {m}", flush=True))
    try:
        with tempfile.TemporaryDirectory(prefix="robolake-soak-") as tmp:
            workdir = Path(tmp)
            try:
                report = asyncio.run(
                    soak(
                        endpoints,
                        workdir,
                        settings,
                        disk=[state / "minio" / "data", state / "kafka" / "data"],
                        stack_pids=stack.pids(),
                    )
                )
            finally:
                logs = args.out.parent / "soak-tables-logs"
                shutil.rmtree(logs, ignore_errors=True)
                logs.mkdir(parents=True, exist_ok=True)
                for log in workdir.glob("*.log"):
                    shutil.copy(log, logs / log.name)
    finally:
        if args.state_dir is None:
            stack.down(progress=lambda m: print(f"    {m}", flush=True))
            shutil.rmtree(state, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report.to_json(), indent=2, default=str))
    print(render(report))
    print(f"figures in {args.out}")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
