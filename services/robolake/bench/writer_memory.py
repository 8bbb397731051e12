"""``python -m robolake.bench.writer_memory`` (``make bench-memory``): the writer's peak memory
draining a backlog of tiny chunks, next to its memory cap.

``--max-buffer-bytes`` caps the data the writer holds, not the process: episode state, the fetch
in flight as Python objects, checkpoints and memory the allocator keeps all come on top, and they
grow with the number of records rather than their bytes. Camera-sized chunks (``make bench``)
hide that; a backlog of ~212k chunks of 1, 7 or 999 rows from 3,000 open episodes shows it. So
this benchmark starts a private stack (``--state-dir``, default
``~/.local/state/robolake/bench-memory-stack``, deleted afterwards unless ``--keep-state``),
produces that backlog into a fresh topic (manifests first, then chunks interleaved across
episodes the way concurrent devices upload, each completion after its episode's last chunk),
then runs ``robolake writer`` with its default settings and samples its VmRSS every 0.5 s until
the group has committed every record. It checks that every produced row is in the shards (row
counts from the Parquet footers), prints one table and writes the figures as JSON. The sizing
table of docs/writer.md comes from this run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from robolake.bench.harness import fresh_dataset
from robolake.dataset.storage import data_files, s3_filesystem, uses_tables
from robolake.endpoints import Endpoints
from robolake.episode.checksums import checksum
from robolake.episode.chunks import encode_chunk
from robolake.episode.records import chunk_record, complete_record, manifest_record
from robolake.episode.synthetic import SyntheticEpisode, SyntheticSpec, generate_episode
from robolake.episode.topics import MAX_RECORD_BYTES
from robolake.launch import ServiceProcess, robolake_argv, service_env
from robolake.provision import TopicSpec, ensure_bucket, ensure_topics, s3_client
from robolake.stack.paths import default_state_dir
from robolake.stack.stack import Stack
from robolake.writer.settings import ENV_DEAD_LETTER_TOPIC

#: RSS is sampled this often: fast enough to catch a flush's peak (a flush of 128 MiB takes
#: seconds), slow enough that reading /proc costs the measured machine nothing.
SAMPLE_INTERVAL_S = 0.5
#: Committed offsets are asked for this often: each ask is an admin round trip to Kafka.
LAG_INTERVAL_S = 2.0
#: What the process needs beyond its data cap for camera-sized chunks (docs/writer.md); the
#: ratio peak / (cap + this) above 1 says a container sized that way would be killed.
HEADROOM_MIB = 300
#: Chunk sizes in rows: single samples and short bursts dominate, a few are a whole stream.
ROW_SIZES = (1, 7, 999)
#: Share of the small chunks that have one row (the rest have seven).
ONE_ROW_SHARE = 0.58
#: Every episode starts at the same instant, so the shards span one date (one file per stream
#: type per flush: the file count reflects flushes, not the calendar).
STARTED_AT_NS = 1_767_600_000 * 10**9
CAMERAS = tuple(f"c{i}" for i in range(10))
KIB = 1024

Say = Callable[[str], None]


def say(message: str) -> None:
    print(f"--> {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Plan:
    """The backlog's shape: ``episodes`` of 10-15 streams (5-10 tiny cameras) into a topic of
    ``partitions``, each stream in ``min_chunks``..``max_chunks`` chunks, of which a share
    ``p999`` (of streams long enough) hold 999 rows and the rest 1 or 7."""

    episodes: int = 3000
    partitions: int = 12
    min_chunks: int = 3
    max_chunks: int = 8
    p999: float = 0.05
    seed: int = 7
    cap_mib: int = 512
    #: Seconds of quiet after which the writer flushes its last buffers (its default is 60:
    #: the end of every drain waits that long, which this benchmark keeps, as production would).
    flush_age_s: float = 60.0
    timeout_s: float = 1800.0


@dataclass
class Backlog:
    """What was produced: every record's value bytes, and the chunk rows the shards must hold."""

    topic: str
    partitions: int
    episodes: int
    streams: int
    records: int = 0
    chunks: int = 0
    rows: int = 0
    value_bytes: int = 0
    chunks_by_rows: dict[str, int] = field(default_factory=dict)
    produce_s: float = 0.0


@dataclass
class WriterRun:
    """One writer's drain of the backlog: time to the last commit from process start (start-up,
    group join and the final flush-age wait included: that is what a restart after an outage
    costs), and its memory: the largest VmRSS sampled and the kernel's own high-water mark."""

    drain_s: float
    peak_rss_mib: float
    peak_at_s: float
    vmhwm_mib: float
    exit_code: int
    samples: list[tuple[float, float]]


def _spec(index: int, cameras: int) -> SyntheticSpec:
    """A small episode: tiny 16x16 frames, so the chunks are few bytes and the count matters."""
    return SyntheticSpec(
        seed=index,
        duration_s=10.0,
        cameras=CAMERAS[:cameras],
        width=16,
        height=16,
        frame_pool=2,
        frame_seed=0,
        started_at_ns=STARTED_AT_NS,
        device_id=f"dev-{index:05d}",
        capture_point_id=f"cp-{index % 40:04d}",
    )


#: Per stream name, per row count, a few encoded chunks with their checksums.
Templates = dict[str, dict[int, list[tuple[bytes, str]]]]


def _templates() -> Templates:
    """Chunks sliced from one reference episode's streams and encoded once: encoding 212k
    chunks would take longer than the drain. Every episode declares the same stream names and
    types, so a template is a valid chunk of any of them."""
    reference = generate_episode(_spec(10**6, len(CAMERAS)))
    templates: Templates = {}
    offsets = {1: (0, 17, 101, 250), 7: (3, 60, 190), 999: (0,)}
    for decl in reference.manifest.streams:
        table = reference.streams[decl.name]
        per: dict[int, list[tuple[bytes, str]]] = {}
        for rows in ROW_SIZES:
            if table.num_rows < rows:
                continue
            for offset in offsets[rows]:
                start = min(offset, table.num_rows - rows)
                data = encode_chunk(table.slice(start, rows), decl.stream_type)
                per.setdefault(rows, []).append((data, checksum(data)))
        templates[decl.name] = per
    return templates


#: One planned chunk: stream, seq, encoded bytes, checksum, rows.
Chunk = tuple[str, int, bytes, str, int]


def _plan_episode(
    episode: SyntheticEpisode, templates: Templates, plan: Plan, rng: random.Random
) -> tuple[list[Chunk], dict[str, dict[str, int]]]:
    """The chunks of one episode and its completion tally (chunks and rows per stream)."""
    chunks: list[Chunk] = []
    tally: dict[str, dict[str, int]] = {}
    for decl in episode.manifest.streams:
        per = templates[decl.name]
        count = rng.randint(plan.min_chunks, plan.max_chunks)
        rows_total = 0
        for seq in range(count):
            draw = rng.random()
            if 999 in per and draw < plan.p999:
                rows = 999
            elif draw < plan.p999 + (1 - plan.p999) * ONE_ROW_SHARE:
                rows = 1
            else:
                rows = 7
            if rows not in per:  # a stream shorter than 7 rows (events): 1-row chunks only
                rows = 1
            data, digest = rng.choice(per[rows])
            chunks.append((decl.name, seq, data, digest, rows))
            rows_total += rows
        tally[decl.name] = {"chunks": count, "rows": rows_total}
    return chunks, tally


async def produce_backlog(endpoints: Endpoints, plan: Plan, progress: Say = say) -> Backlog:
    """Create a fresh topic and fill it: every manifest, then one chunk per episode per round
    in shuffled order (3,000 episodes stay open at once, as with concurrent devices), each
    completion right after its episode's last chunk."""
    topic = f"bench-memory-{uuid.uuid4().hex[:10]}"
    await ensure_topics(
        endpoints.kafka_bootstrap,
        [TopicSpec(topic, plan.partitions, {"max.message.bytes": str(MAX_RECORD_BYTES)})],
    )
    rng = random.Random(plan.seed)
    templates = _templates()
    began = time.monotonic()
    episodes: list[tuple[SyntheticEpisode, list[Chunk], dict[str, dict[str, int]]]] = []
    for index in range(plan.episodes):
        episode = generate_episode(_spec(index, rng.randint(5, 10)))  # 10..15 streams
        episodes.append((episode, *_plan_episode(episode, templates, plan, rng)))
        if index and index % 1000 == 0:
            progress(f"  {index} episodes planned ({time.monotonic() - began:.0f} s)")
    backlog = Backlog(
        topic=topic,
        partitions=plan.partitions,
        episodes=len(episodes),
        streams=sum(len(e.manifest.streams) for e, _, _ in episodes),
        chunks_by_rows={str(rows): 0 for rows in ROW_SIZES},
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=endpoints.kafka_bootstrap,
        acks="all",
        enable_idempotence=True,
        max_request_size=MAX_RECORD_BYTES,
        max_batch_size=1024 * 1024,
        linger_ms=20,
    )
    await producer.start()
    pending: list[asyncio.Future[Any]] = []

    async def send(value: bytes, key: bytes, headers: Any) -> None:
        pending.append(await producer.send(topic, value, key=key, headers=headers))
        backlog.records += 1
        backlog.value_bytes += len(value)
        if len(pending) >= 5000:  # bound the futures held, not the producer's own buffer
            await asyncio.gather(*pending)
            pending.clear()

    try:
        for episode, _, _ in episodes:
            value = episode.manifest_bytes()
            meta = manifest_record(episode.manifest, value)
            await send(value, meta.key, meta.headers())
        cursors = [0] * len(episodes)
        live = list(range(len(episodes)))
        while live:  # each round sends one chunk of every live episode: at most max_chunks*15
            rng.shuffle(live)
            still: list[int] = []
            for e in live:
                episode, chunks, tally = episodes[e]
                stream, seq, data, digest, rows = chunks[cursors[e]]
                cursors[e] += 1
                meta = chunk_record(episode.manifest, stream, seq, data, digest=digest)
                await send(data, meta.key, meta.headers())
                backlog.chunks += 1
                backlog.rows += rows
                backlog.chunks_by_rows[str(rows)] += 1
                if cursors[e] < len(chunks):
                    still.append(e)
                else:
                    done = json.dumps({"streams": tally}, separators=(",", ":")).encode()
                    meta = complete_record(episode.manifest, done)
                    await send(done, meta.key, meta.headers())
            live = still
        await asyncio.gather(*pending)
        await producer.flush()
    finally:
        await producer.stop()
    backlog.produce_s = round(time.monotonic() - began, 1)
    return backlog


def _status_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in KiB (empty once it is gone)."""
    fields: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                name, _, rest = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    fields[name] = int(rest.split()[0])
    except FileNotFoundError:
        pass
    return fields


async def _committed(admin: AIOKafkaAdminClient, group: str, topic: str) -> dict[int, int]:
    offsets = await admin.list_consumer_group_offsets(group)
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


async def run_writer(
    endpoints: Endpoints,
    workdir: Path,
    backlog: Backlog,
    ends: dict[int, int],
    plan: Plan,
    progress: Say = say,
) -> WriterRun:
    """``robolake writer`` with default settings (no metrics port, no bucket listing: neither
    is what is measured) on a fresh group and dead-letter topic, sampled until its committed
    offsets equal the high watermarks ``ends``, then stopped with SIGTERM."""
    dead_letters = f"{backlog.topic}-dlq"
    await ensure_topics(
        endpoints.kafka_bootstrap,
        [TopicSpec(dead_letters, 1, {"max.message.bytes": str(MAX_RECORD_BYTES)})],
    )
    group = f"{backlog.topic}-writer"
    args = [
        "writer",
        "--group",
        group,
        "--metrics-port",
        "-1",
        "--stored-bytes-interval",
        "0",
        "--max-buffer-bytes",
        f"{plan.cap_mib}MiB",
        "--flush-age",
        str(plan.flush_age_s),
    ]
    env = service_env(
        endpoints, chunk_topic=backlog.topic, extra={ENV_DEAD_LETTER_TOPIC: dead_letters}
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=endpoints.kafka_bootstrap)
    await admin.start()
    writer = ServiceProcess.start(
        "writer", robolake_argv(*args), env=env, log_path=workdir / "writer.log"
    )
    began = time.monotonic()
    samples: list[tuple[float, float]] = []
    peak_kib, peak_at = 0, 0.0
    drained_at: float | None = None
    hwm_kib = 0
    next_lag = began
    try:
        while (now := time.monotonic()) - began < plan.timeout_s:
            writer.check()
            rss = _status_kib(writer.pid).get("VmRSS", 0)
            samples.append((round(now - began, 1), round(rss / KIB, 1)))
            if rss > peak_kib:
                peak_kib, peak_at = rss, now - began
            if now >= next_lag:
                next_lag = now + LAG_INTERVAL_S
                try:
                    committed = await asyncio.wait_for(_committed(admin, group, backlog.topic), 30)
                except (KafkaError, TimeoutError) as exc:
                    # A fresh stack creates __consumer_offsets on the group's first join: the
                    # coordinator is unknown for a few seconds. Ask again next time.
                    progress(f"  committed offsets not known yet ({exc!r})")
                    await asyncio.sleep(SAMPLE_INTERVAL_S)
                    continue
                lag = sum(end - max(0, committed.get(p, 0)) for p, end in ends.items())
                if len(samples) % 40 == 1:
                    progress(
                        f"  t={now - began:4.0f} s rss={rss / KIB:5.0f} MiB "
                        f"peak={peak_kib / KIB:5.0f} MiB lag={lag}"
                    )
                if lag <= 0:
                    drained_at = now - began
                    # The high-water mark before SIGTERM: the shutdown has nothing to flush.
                    # The kernel raises its recorded mark only on some unmap paths (memory
                    # released otherwise, e.g. by the allocator's madvise, is not counted):
                    # seen 0.1 MiB below an RSS sampled earlier. The high-water mark is at
                    # least every RSS seen.
                    hwm_kib = max(_status_kib(writer.pid).get("VmHWM", 0), peak_kib)
                    break
            await asyncio.sleep(SAMPLE_INTERVAL_S)
    finally:
        await admin.close()
        exit_code = await writer.astop(120.0)  # SIGTERM, SIGKILL only after 120 s
    if drained_at is None:
        raise TimeoutError(
            f"writer did not commit every record of {backlog.topic} in {plan.timeout_s:.0f} s; "
            f"last lines of {writer.log_path}:\n{writer.tail()}"
        )
    return WriterRun(
        drain_s=round(drained_at, 1),
        peak_rss_mib=round(peak_kib / KIB, 1),
        peak_at_s=round(peak_at, 1),
        vmhwm_mib=round(hwm_kib / KIB, 1),
        exit_code=exit_code,
        samples=samples,
    )


async def _end_offsets(endpoints: Endpoints, topic: str, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=endpoints.kafka_bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
    finally:
        await consumer.stop()
    return {tp.partition: int(offset) for tp, offset in ends.items()}


def shard_rows(endpoints: Endpoints) -> tuple[int, int, float]:
    """The shard files (the tables' current data files, or ``shards/`` of the bucket layout),
    their rows (from each Parquet footer, so nothing but the footers is read) and their MiB."""
    client = s3_client(endpoints)
    fs = s3_filesystem(endpoints)
    files, rows, size = 0, 0, 0
    if uses_tables(endpoints):
        for file in data_files(endpoints):
            with fs.open_input_file(f"{endpoints.s3_bucket}/{file.key}") as handle:
                rows += pq.ParquetFile(handle).metadata.num_rows
            files += 1
            size += file.size
        return files, rows, size / 2**20
    for obj in client.list_objects(endpoints.s3_bucket, prefix="shards/", recursive=True):
        if not str(obj.object_name).endswith(".parquet"):
            continue
        with fs.open_input_file(f"{endpoints.s3_bucket}/{obj.object_name}") as handle:
            rows += pq.ParquetFile(handle).metadata.num_rows
        files += 1
        size += obj.size or 0
    return files, rows, size / 2**20


async def measure_memory(
    endpoints: Endpoints, workdir: Path, plan: Plan, progress: Say = say
) -> dict[str, Any]:
    """Produce the backlog, drain it with one writer into a fresh bucket, check the rows;
    the figures as a JSON-ready dict (``rows_ok`` false if any produced row is missing)."""
    load_before = os.getloadavg()
    progress(
        f"producing {plan.episodes} episodes into {plan.partitions} partitions "
        f"({plan.min_chunks}-{plan.max_chunks} chunks per stream, {plan.p999:.0%} of 999 rows)"
    )
    backlog = await produce_backlog(endpoints, plan, progress)
    progress(
        f"  {backlog.records} records ({backlog.chunks} chunks, {backlog.rows} rows, "
        f"{backlog.value_bytes / 1e6:.1f} MB) in {backlog.produce_s:.0f} s"
    )
    ends = await _end_offsets(endpoints, backlog.topic, backlog.partitions)
    if sum(ends.values()) != backlog.records:
        raise RuntimeError(f"topic holds {sum(ends.values())} records, {backlog.records} sent")
    bucket = fresh_dataset(endpoints, "bench-memory")
    ensure_bucket(bucket)
    progress(f"draining with robolake writer (cap {plan.cap_mib} MiB, defaults otherwise)")
    load_start = os.getloadavg()
    run = await run_writer(bucket, workdir, backlog, ends, plan, progress)
    load_end = os.getloadavg()
    files, rows, shard_mib = await asyncio.to_thread(shard_rows, bucket)
    megabytes = backlog.value_bytes / 1e6
    return {
        "records": backlog.records,
        "mb_consumed": round(megabytes, 1),
        "drain_s": run.drain_s,
        "mb_per_s": round(megabytes / run.drain_s, 2),
        "peak_rss_mib": run.peak_rss_mib,
        "vmhwm_mib": run.vmhwm_mib,
        "cap_mib": plan.cap_mib,
        "ratio": round(run.vmhwm_mib / (plan.cap_mib + HEADROOM_MIB), 2),
        "shard_files": files,
        "shard_mib": round(shard_mib, 1),
        "rows_produced": backlog.rows,
        "rows_in_shards": rows,
        "rows_ok": rows == backlog.rows,
        "peak_at_s": run.peak_at_s,
        "writer_exit_code": run.exit_code,
        "load_average": {
            "before_produce": [round(x, 2) for x in load_before],
            "writer_start": [round(x, 2) for x in load_start],
            "writer_end": [round(x, 2) for x in load_end],
            "cpus": os.cpu_count(),
        },
        "plan": asdict(plan),
        "backlog": asdict(backlog),
        "rss_samples": run.samples,
    }


def render(result: dict[str, Any]) -> str:
    """The one table: what was drained, how fast, and memory against the cap."""
    rows = [
        ("records", f"{result['records']:,}"),
        ("MB consumed", f"{result['mb_consumed']:.1f}"),
        ("drain s (from process start)", f"{result['drain_s']:.1f}"),
        ("MB/s", f"{result['mb_per_s']:.2f}"),
        ("peak RSS MiB (0.5 s samples)", f"{result['peak_rss_mib']:.0f}"),
        ("VmHWM MiB", f"{result['vmhwm_mib']:.0f}"),
        ("cap MiB (--max-buffer-bytes)", f"{result['cap_mib']}"),
        (f"ratio VmHWM/(cap+{HEADROOM_MIB})", f"{result['ratio']:.2f}"),
        ("shard files", f"{result['shard_files']}"),
        (
            "rows produced / in shards",
            f"{result['rows_produced']:,} / {result['rows_in_shards']:,}",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{'figure':<{width}}  value", f"{'-' * width}  -----"]
    lines += [f"{name:<{width}}  {value}" for name, value in rows]
    load = result["load_average"]
    lines.append(
        f"(load average at writer start {load['writer_start'][0]:.2f}, "
        f"end {load['writer_end'][0]:.2f}; {load['cpus']} CPUs)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    defaults = Plan()
    parser = argparse.ArgumentParser(
        prog="python -m robolake.bench.writer_memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--episodes", type=int, default=defaults.episodes)
    parser.add_argument("--partitions", type=int, default=defaults.partitions)
    parser.add_argument(
        "--min-chunks", type=int, default=defaults.min_chunks, help="chunks per stream, at least"
    )
    parser.add_argument(
        "--max-chunks", type=int, default=defaults.max_chunks, help="chunks per stream, at most"
    )
    parser.add_argument(
        "--p999",
        type=float,
        default=defaults.p999,
        help="share of 999-row chunks in streams that long (the rest: 58%% 1 row, 42%% 7 rows)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--cap-mib", type=int, default=defaults.cap_mib, help="the writer's --max-buffer-bytes"
    )
    parser.add_argument(
        "--flush-age",
        type=float,
        default=defaults.flush_age_s,
        help="the writer's --flush-age (its default; the drain ends with one such wait)",
    )
    parser.add_argument("--timeout", type=float, default=defaults.timeout_s, help="drain bound, s")
    parser.add_argument("--out", type=Path, default=Path("bench-results/writer-memory.json"))
    parser.add_argument("--state-dir", type=Path, default=None, help="stack state directory")
    parser.add_argument(
        "--keep-state",
        action="store_true",
        help="keep the default stack's data instead of deleting it after the run "
        "(a --state-dir given is never deleted)",
    )
    args = parser.parse_args(argv)
    plan = Plan(
        episodes=args.episodes,
        partitions=args.partitions,
        min_chunks=args.min_chunks,
        max_chunks=args.max_chunks,
        p999=args.p999,
        seed=args.seed,
        cap_mib=args.cap_mib,
        flush_age_s=args.flush_age,
        timeout_s=args.timeout,
    )
    if not 1 <= plan.min_chunks <= plan.max_chunks or not 0 <= plan.p999 <= 1:
        parser.error("need 1 <= --min-chunks <= --max-chunks and 0 <= --p999 <= 1")
    state = args.state_dir or default_state_dir().with_name("bench-memory-stack")
    stack = Stack(state)
    began = time.monotonic()
    say(f"bench stack in {state}")
    endpoints = stack.up(progress=say)
    try:
        with tempfile.TemporaryDirectory(prefix="robolake-bench-memory-") as tmp:
            result = asyncio.run(measure_memory(endpoints, Path(tmp), plan))
    finally:
        stack.down(progress=say)
        if args.state_dir is None and not args.keep_state:
            # The backlog and its shards are of no use after the run.
            shutil.rmtree(state, ignore_errors=True)
    result["seconds"] = round(time.monotonic() - began, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(render(result))
    print(f"\n({result['seconds']:.0f} s; figures in {args.out})")
    if not result["rows_ok"]:
        print("rows missing from the shards: the figures are not of a complete drain")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
