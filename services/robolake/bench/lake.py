"""Readers and the exporter at scale: what reading the tables costs as the lake grows.

Three figures of the benchmark issue, each a ratio measured in one run on one stack:

- **Reader frames/s, pinned snapshot vs listing.** The same episodes, from one pre-filled topic,
  are written by two writers -- ``--record tables`` into one dataset, ``--record bucket`` into
  another -- and read back as aligned training frames
  (:func:`robolake.dataset.frames.episode_frames`) through
  :class:`~robolake.dataset.RobolakeDataset`: pinned to the tables' snapshots, and by
  listing the bucket. Both must see the same frames, or nothing is reported.
- **Exporter scan at 10^3 and 10^5 data files.** Real small Parquet objects (the writer's
  encoding of a few joint-state rows) uploaded to MinIO and committed to a shard table in a few
  bulk appends; the exporter's own scan (:meth:`~robolake.ops.exporter.Exporter.scan_once`) is
  timed at each size, warm as its collection loop runs it, and the first (cold) scan apart:
  both flat, as episodes' bytes come from the index rows (``stored_bytes``).
- **Filtered episode query over 10^6 episodes vs 10^3.** A synthetic index of the real schema
  (:func:`synthetic_index_day`), one compacted file per date as ``robolake compact`` leaves
  closed partitions, queried with scene + task + date through
  :meth:`~robolake.dataset.RobolakeDataset.episodes`; the answer's size is checked against what
  was generated.

Sizes come from a :class:`LakePlan` (:data:`FULL`, :data:`SMOKE` for CI); each part runs in
datasets of its own (:func:`~robolake.bench.harness.fresh_dataset`: a bucket and a namespace).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import json
import logging
import statistics
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from pyiceberg.manifest import DataFile

from robolake.bench.harness import Service, bench_env, drop_dataset, fresh_dataset
from robolake.bench.writer import prefill
from robolake.dataset import RobolakeDataset, storage
from robolake.dataset.episodes import EpisodeFilter
from robolake.dataset.frames import episode_frames
from robolake.endpoints import Endpoints
from robolake.episode.ids import uuid7
from robolake.episode.manifest import SCENES
from robolake.episode.shards import episodes_index as index_description
from robolake.episode.shards import shard_schema
from robolake.episode.stream_types import default_registry
from robolake.episode.topics import MAX_RECORD_BYTES
from robolake.lake import layout
from robolake.lake.catalog import LakeTables
from robolake.lake.commits import data_file, without_retries
from robolake.lake.maintenance import encode
from robolake.lake.offsets import carried_all
from robolake.lake.schema import TARGET_FILE_BYTES, conform
from robolake.ops.exporter import Exporter, ExporterSettings
from robolake.provision import TopicSpec, ensure_bucket, ensure_topics, s3_client
from robolake.stack.process import free_port
from robolake.writer.shards import encode_parquet

log = logging.getLogger(__name__)

#: Report row: figure, value, ceiling, minimum ratio, target (``bench/report.py``).
Row = tuple[str, float, float | None, float | None, str]

RECORD_BYTES: Final = 1024 * 1024
#: Frame rate the reader aligns episodes to (the cameras').
FRAME_RATE_HZ: Final = 30.0
#: Entries per bulk append: a few big commits, never one per file.
FILES_PER_COMMIT: Final = 25_000
#: Concurrent PUTs of the synthetic data files (more only queue at MinIO on two cores).
UPLOAD_THREADS: Final = 8
#: The targets (docs/tables.md, "Readers and the exporter at scale", says why these).
SCAN_GROWTH_LIMIT: Final = 3.0
QUERY_GROWTH_LIMIT: Final = 30.0


@dataclass(frozen=True)
class LakePlan:
    """Sizes of one run."""

    #: Megabytes of humanoid episodes both writers store and both readers read.
    reader_mb: int
    reader_repeats: int
    #: Data files of the exporter's small and large lake.
    files_small: int
    files_large: int
    #: Episodes the data files hold (each file one episode's rows; every size the same).
    file_episodes: int
    scan_repeats: int
    #: Episodes of the small and large index; ``episodes_per_day`` of them per date partition.
    episodes_small: int
    episodes_large: int
    episodes_per_day: int
    query_repeats: int


FULL: Final = LakePlan(
    reader_mb=300,
    reader_repeats=5,
    files_small=1_000,
    files_large=100_000,
    file_episodes=200,
    scan_repeats=3,
    episodes_small=1_000,
    episodes_large=1_000_000,
    episodes_per_day=1_000,
    query_repeats=5,
)
SMOKE: Final = LakePlan(
    reader_mb=15,
    reader_repeats=1,
    files_small=100,
    files_large=1_000,
    file_episodes=20,
    scan_repeats=1,
    episodes_small=1_000,
    episodes_large=10_000,
    episodes_per_day=1_000,
    query_repeats=2,
)


def plan(smoke: bool) -> LakePlan:
    return SMOKE if smoke else FULL


@dataclass
class LakeFigures:
    """What one run measured (seconds are medians of the repeats unless named otherwise)."""

    reader_episodes: int
    reader_frames: int
    pinned_frames_per_s: float
    listing_frames_per_s: float
    files_small: int
    files_large: int
    #: Uploading the large lake's data files (real objects) and committing them.
    upload_large_s: float
    commit_large_s: float
    scan_small_s: float
    scan_large_s: float
    #: The exporter's first scan (before its manifest cache; it reads no data file either).
    cold_scan_small_s: float
    cold_scan_large_s: float
    episodes_small: int
    episodes_large: int
    index_files_large: int
    index_mb_large: float
    build_large_s: float
    query_small_s: float
    query_large_s: float
    query_matches_small: int
    query_matches_large: int
    seconds: dict[str, list[float]] = field(default_factory=dict)

    @property
    def scan_growth(self) -> float:
        return growth(self.scan_small_s, self.scan_large_s)

    @property
    def cold_scan_growth(self) -> float:
        return growth(self.cold_scan_small_s, self.cold_scan_large_s)

    @property
    def query_growth(self) -> float:
        return growth(self.query_small_s, self.query_large_s)


def growth(small_s: float, large_s: float) -> float:
    """How many times longer the large lake took (a floor of 1 ms keeps a 0 from dividing)."""
    return large_s / max(small_s, 1e-3)


def rows(figures: LakeFigures) -> list[Row]:
    """The report's rows for these figures."""
    files = figures.files_large // max(figures.files_small, 1)
    episodes = figures.episodes_large // max(figures.episodes_small, 1)
    return [
        (
            "reader frames/s, pinned tables vs listing",
            figures.pinned_frames_per_s,
            figures.listing_frames_per_s,
            1.0,
            ">= 1 x the listing reader",
        ),
        (
            f"exporter scan {figures.files_large:.0e} / {figures.files_small:.0e} files",
            figures.scan_growth,
            SCAN_GROWTH_LIMIT,
            None,
            f"< {SCAN_GROWTH_LIMIT:g} x for {files} x the files",
        ),
        (
            f"exporter first scan {figures.files_large:.0e} / {figures.files_small:.0e} files",
            figures.cold_scan_growth,
            SCAN_GROWTH_LIMIT,
            None,
            f"< {SCAN_GROWTH_LIMIT:g} x: bytes from the index, no file read",
        ),
        (
            f"episode query {figures.episodes_large:.0e} / {figures.episodes_small:.0e} eps",
            figures.query_growth,
            QUERY_GROWTH_LIMIT,
            None,
            f"< {QUERY_GROWTH_LIMIT:g} x for {episodes} x the episodes",
        ),
    ]


# -- the synthetic index -------------------------------------------------------------------

TASKS: Final = (
    "pick up the red box and put it on the second shelf",
    "pick up the blue box and put it on the top shelf",
    "hand the red box to the nurse",
    "open the cabinet door",
    "close the cabinet door",
    "push the cart to the loading bay",
    "fold the towel",
    "wipe the table",
    "sort the parcels by size",
    "stack the crates",
    "carry the tray to the counter",
    "restock the shelf with bottles",
    "press the elevator button",
    "open the fridge and take out the milk",
    "hang the jacket on the rack",
    "load the dishwasher",
    "scan the barcode of the parcel",
    "water the plant",
    "plug in the charger",
    "walk to the reception desk",
)
ROBOT_TYPES: Final = (
    "humanoid_29dof",
    "humanoid_23dof",
    "humanoid_41dof",
    "biarm_14dof",
    "mobile_manipulator_7dof",
    "quadruped_arm_18dof",
)
#: Share of each scene in ``SCENES`` order (warehouses and factories record the most).
SCENE_WEIGHTS: Final = (0.12, 0.10, 0.30, 0.25, 0.10, 0.08, 0.05)
CAPTURE_POINTS: Final = 1_000
ORGANISATIONS: Final = 25
DAY_MS: Final = 86_400_000
#: Streams of every synthetic episode, as the bench humanoid declares them.
STREAMS: Final = (
    ("joint_state", "joint_state", 100.0),
    ("action", "action", 100.0),
    ("imu", "imu", 200.0),
    ("head_camera", "image", 30.0),
    ("left_wrist_camera", "image", 30.0),
    ("right_wrist_camera", "image", 30.0),
    ("events", "event", 0.0),
)
#: The first day of every synthetic index (episodes then fill ``episodes_per_day`` a day).
FIRST_DAY: Final = dt.date(2024, 1, 1)


@dataclass(frozen=True)
class IndexQuery:
    """The ML user's question of the query benchmark, and the episodes that answer it."""

    scene: str
    task: str
    day: dt.date

    def criteria(self) -> EpisodeFilter:
        start = dt.datetime.combine(self.day, dt.time(), tzinfo=dt.UTC)
        return EpisodeFilter(
            scenes=(self.scene,),
            task=self.task,
            started_from=start,
            started_before=start + dt.timedelta(days=1),
        )

    def matches(self, day: pa.Table) -> int:
        """Episodes of one generated day that answer the query (from the generated columns)."""
        if not day.num_rows:
            return 0
        started = day["started_at"].cast(pa.int64()).to_numpy() // 1_000_000
        day_ms = (self.day - dt.date(1970, 1, 1)).days * DAY_MS
        in_day = (started >= day_ms) & (started < day_ms + DAY_MS)
        scene = np.asarray(day["scene"].to_pylist()) == self.scene
        needle = self.task.lower()
        tasks = np.asarray([needle in t.lower() for t in day["task"].to_pylist()])
        return int(np.count_nonzero(in_day & scene & tasks))


def index_days(episodes: int, per_day: int) -> list[tuple[dt.date, int]]:
    """(date, episodes) of an index of ``episodes`` recorded ``per_day`` a day from
    :data:`FIRST_DAY`: a lake grows by days, so a larger one has more dates, not fuller ones."""
    days = []
    left = episodes
    day = FIRST_DAY
    while left > 0:
        count = min(per_day, left)
        days.append((day, count))
        left -= count
        day += dt.timedelta(days=1)
    return days


def _manifest_template() -> str:
    streams = [
        {"name": name, "type": kind, "type_version": 1, "rate_hz": rate, "elements": []}
        for name, kind, rate in STREAMS
    ]
    joints = [f"joint_{i:02d}" for i in range(29)]
    for stream in streams[:2]:
        stream["elements"] = joints
    document = {
        "manifest_version": 1,
        "episode_id": "@ID@",
        "capture_point_id": "@CP@",
        "device_id": "@DEV@",
        "robot_type": "@ROBOT@",
        "scene": "@SCENE@",
        "task": "@TASK@",
        "operator": "@OP@",
        "started_at": "@START@",
        "ended_at": "@END@",
        "streams": streams,
        "software": {"recorder": "robolake-capture 0.9.3", "firmware": "hx-2.14.1"},
    }
    return json.dumps(document, separators=(",", ":"))


def _strings(values: np.ndarray, vocabulary: Sequence[str]) -> pa.Array:
    return pa.array(vocabulary, pa.string()).take(pa.array(values))


def _lists(offsets: np.ndarray, values: pa.Array, list_type: pa.DataType | None = None) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values, type=list_type)


def synthetic_index_day(day: dt.date, count: int, seed: int, namespace: str) -> pa.Table:
    """``count`` index rows of episodes recorded on ``day`` (the contract's schema, sorted by
    episode id), as varied as a real fleet's: scenes by weight, 20 tasks, six robot types,
    1,000 capture points of 25 organisations, two devices each, seven streams, the shard files
    of the day's flushes, a manifest of about 1.5 KB, some incomplete and flagged episodes.

    Deterministic in ``(day, count, seed)``; episode ids are UUIDv7 of their start time, so an
    episode's ``date`` partition is ``day``.
    """
    rng = np.random.default_rng([seed, day.toordinal(), count])
    day_ms = (day - dt.date(1970, 1, 1)).days * DAY_MS
    start_ms = np.sort(day_ms + rng.integers(0, DAY_MS - 200_000, count))
    duration_ms = rng.integers(10_000, 180_000, count)
    end_ms = start_ms + duration_ms
    randoms = rng.integers(0, 256, (count, 10), dtype=np.uint8)
    ids = [uuid7(int(ms), bytes(r)) for ms, r in zip(start_ms, randoms, strict=True)]
    scene = rng.choice(len(SCENES), count, p=SCENE_WEIGHTS)
    task = rng.integers(0, len(TASKS), count)
    robot = rng.integers(0, len(ROBOT_TYPES), count)
    point = rng.integers(0, CAPTURE_POINTS, count)
    device = point * 2 + rng.integers(0, 2, count)
    operator = rng.integers(0, 400, count)
    points = [f"cp-{i:04d}" for i in range(CAPTURE_POINTS)]
    devices = [f"dev-{i:05d}" for i in range(CAPTURE_POINTS * 2)]
    organisations = [f"org-{i % ORGANISATIONS:02d}" for i in range(CAPTURE_POINTS)]
    operators = [f"op-{i:04x}" for i in range(400)]

    template = _manifest_template()
    manifests = []
    for i in range(count):
        text = template
        for mark, value in (
            ("@ID@", ids[i]),
            ("@CP@", points[point[i]]),
            ("@DEV@", devices[device[i]]),
            ("@ROBOT@", ROBOT_TYPES[robot[i]]),
            ("@SCENE@", SCENES[scene[i]]),
            ("@TASK@", TASKS[task[i]]),
            ("@OP@", operators[operator[i]]),
        ):
            text = text.replace(mark, value)
        started = dt.datetime.fromtimestamp(start_ms[i] / 1000, dt.UTC)
        ended = dt.datetime.fromtimestamp(end_ms[i] / 1000, dt.UTC)
        text = text.replace("@START@", started.isoformat().replace("+00:00", "Z"))
        manifests.append(text.replace("@END@", ended.isoformat().replace("+00:00", "Z")))

    n_streams = len(STREAMS)
    stream_offsets = np.arange(count + 1) * n_streams
    rates = np.tile([rate for _, _, rate in STREAMS], count)
    seconds = np.repeat(duration_ms / 1000, n_streams)
    stored = (rates * seconds).astype(np.int64)
    stored[rates == 0] = rng.integers(1, 20, int(np.count_nonzero(rates == 0)))
    chunks = np.maximum(1, stored // 500)
    first_ns = np.repeat(start_ms * 1_000_000, n_streams)
    last_ns = np.repeat(end_ms * 1_000_000, n_streams)
    complete = rng.random(count) > 0.04
    declared_rows = np.where(np.repeat(complete, n_streams), stored, stored + 30)
    declared_chunks = np.where(np.repeat(complete, n_streams), chunks, chunks + 1)
    stream_type = index_description().schema.field("streams").type
    struct = pa.StructArray.from_arrays(
        [
            _strings(np.tile(np.arange(n_streams), count), [s[0] for s in STREAMS]),
            _strings(np.tile(np.arange(n_streams), count), [s[1] for s in STREAMS]),
            pa.array(np.ones(count * n_streams, np.int32)),
            pa.array(["991d59a3d9bcb5ca"] * (count * n_streams), pa.string()),
            pa.array(stored),
            pa.array(chunks),
            pa.array(first_ns),
            pa.array(last_ns),
            pa.array(declared_rows),
            pa.array(declared_chunks),
        ],
        fields=list(stream_type.value_type),
    )
    # The day's flush files: every episode's rows of a type sit in one of a few hundred.
    flushes = [
        layout.data_file_key(
            namespace,
            layout.shard_table(f"{kind}.v1"),
            day,
            "robolake.chunks.v1",
            f % 16,
            f * 4096,
            f,
            "a1b2c3d4",
        )
        for kind in ("joint_state", "action", "imu", "image", "event")
        for f in range(200)
    ]
    file_pick = (np.arange(5) * 200)[None, :] + rng.integers(0, 200, (count, 5))
    shard_files = _lists(np.arange(count + 1) * 5, _strings(file_pick.ravel(), flushes))
    n_tags = rng.integers(0, 3, count)
    tag_vocabulary = ["teleop", "policy-eval", "night-shift", "calibrated", "demo", "retry"]
    tags = _lists(
        np.concatenate([[0], np.cumsum(n_tags)]),
        _strings(rng.integers(0, len(tag_vocabulary), int(n_tags.sum())), tag_vocabulary),
    )
    flagged = ~complete | (rng.random(count) < 0.03)
    flag_values = np.where(complete[flagged], "rate_off_nominal", "missing_chunks")
    flags = _lists(
        np.concatenate([[0], np.cumsum(flagged)]), pa.array(flag_values.tolist(), pa.string())
    )
    ns = pa.timestamp("ns", tz="UTC")
    columns = {
        "episode_id": pa.array(ids, pa.string()),
        "capture_point_id": _strings(point, points),
        "device_id": _strings(device, devices),
        "robot_type": _strings(robot, ROBOT_TYPES),
        "scene": _strings(scene, SCENES),
        "task": _strings(task, TASKS),
        "operator": _strings(operator, operators),
        "started_at": pa.array(start_ms * 1_000_000, pa.int64()).cast(ns),
        "ended_at": pa.array(end_ms * 1_000_000, pa.int64()).cast(ns),
        "tags": tags,
        "license": pa.array(["CC-BY-4.0"] * count, pa.string()),
        "consent": pa.array(["research"] * count, pa.string()),
        "manifest_json": pa.array(manifests, pa.string()),
        "streams": _lists(stream_offsets, struct),
        "shard_files": shard_files,
        "complete": pa.array(complete),
        "quality_flags": flags,
        "indexed_at": pa.array((end_ms + 5_000) * 1_000_000, pa.int64()).cast(ns),
        "organisation": _strings(point, organisations),
        # About 40 bytes a row once encoded (a file lake sets its real sizes, _file_lake).
        "stored_bytes": pa.array(stored.reshape(count, n_streams).sum(axis=1) * 40, pa.int64()),
    }
    schema = index_description().schema
    table = pa.Table.from_arrays([columns[f.name].cast(f.type) for f in schema], schema=schema)
    return table.sort_by([("episode_id", "ascending")])


# -- committing in bulk ---------------------------------------------------------------------


def _upload(endpoints: Endpoints, objects: Sequence[tuple[str, bytes]]) -> None:
    """PUT every (key, bytes) with :data:`UPLOAD_THREADS` in flight (the minio client: three
    times the small-object rate of pyarrow's S3 streams here, which start a multipart upload
    per object)."""
    client = s3_client(endpoints)

    def put(item: tuple[str, bytes]) -> None:
        client.put_object(endpoints.s3_bucket, item[0], io.BytesIO(item[1]), len(item[1]))

    with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
        for _ in pool.map(put, objects):
            pass


def _append(tables: LakeTables, name: str, files: Sequence[DataFile]) -> None:
    """Append ``files`` to ``name`` in commits of :data:`FILES_PER_COMMIT` entries."""
    for start in range(0, len(files), FILES_PER_COMMIT):
        table = tables.load(name)
        transaction = without_retries(table).transaction()
        summary = carried_all(table.metadata)
        with transaction.update_snapshot(snapshot_properties=summary).fast_append() as append:
            for entry in files[start : start + FILES_PER_COMMIT]:
                append.append_data_file(entry)
        transaction.commit_transaction()


def _moved(template: DataFile, path: str) -> DataFile:
    """The manifest entry of a copy of ``template``'s object at ``path`` (same bytes)."""
    entry = DataFile(*[template[i] for i in range(len(template))])
    entry[1] = path  # file_path
    return entry


def _lake(endpoints: Endpoints, prefix: str) -> tuple[Endpoints, LakeTables]:
    """A fresh bucket and namespace holding robolake's (empty) tables, as ``robolake init``
    leaves them."""
    fresh = fresh_dataset(endpoints, prefix)
    ensure_bucket(fresh)
    tables = LakeTables.from_endpoints(fresh)
    tables.ensure_all(default_registry())
    return fresh, tables


@contextlib.contextmanager
def _quiet_statistics() -> Iterator[None]:
    """pyiceberg warns once per file and list column that Parquet keeps no statistics for it
    (the index's lists): thousands of lines for a bulk commit, and true of every index file."""
    logger = logging.getLogger("pyiceberg.io.pyarrow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _commit_index(endpoints: Endpoints, tables: LakeTables, days: Sequence[pa.Table]) -> None:
    """Each day's rows as the compacted file(s) of its partition, uploaded and appended."""
    info = tables.info(layout.INDEX_TABLE)
    metadata = tables.load(layout.INDEX_TABLE).metadata
    entries = []
    objects = []
    for rows in days:
        if not rows.num_rows:
            continue
        date = rows["started_at"][0].as_py().date()
        conformed = conform(rows, info.file_schema, date)
        for n, encoded in enumerate(encode(conformed, TARGET_FILE_BYTES)):
            key = layout.rewritten_key(info.prefix, date, f"compacted-{n}")
            objects.append((key, encoded))
            with _quiet_statistics():
                entry = data_file(metadata, f"s3://{endpoints.s3_bucket}/{key}", encoded)
            entries.append(entry)
    _upload(endpoints, objects)
    _append(tables, layout.INDEX_TABLE, entries)


# -- the exporter ---------------------------------------------------------------------------


@dataclass
class _FileLake:
    endpoints: Endpoints
    files: int
    upload_s: float
    commit_s: float


def _joint_rows(tables: LakeTables, episode_id: str, date: dt.date, rows: int) -> pa.Table:
    """``rows`` joint-state samples of one episode in the table's file schema."""
    contract = shard_schema(default_registry().get("joint_state", 1))
    start = (date - dt.date(1970, 1, 1)).days * DAY_MS * 1_000_000
    values = pa.array(np.sin(np.arange(rows * 29, dtype=np.float32) / 50.0))
    vectors = pa.ListArray.from_arrays(pa.array(np.arange(rows + 1) * 29, pa.int32()), values)
    columns: dict[str, pa.Array] = {
        "episode_id": pa.array([episode_id] * rows, pa.string()),
        "capture_point_id": pa.array(["cp-0000"] * rows, pa.string()),
        "stream": pa.array(["joint_state"] * rows, pa.string()),
        "seq": pa.array(np.arange(rows) // 50, pa.int64()),
        "t_ns": pa.array(start + np.arange(rows, dtype=np.int64) * 10_000_000),
        "position": vectors,
        "velocity": vectors,
        "effort": vectors,
    }
    table = pa.Table.from_arrays([columns[f.name].cast(f.type) for f in contract], schema=contract)
    return conform(table, tables.info(layout.shard_table("joint_state.v1")).file_schema, date)


def _file_lake(endpoints: Endpoints, files: int, episodes: int, seed: int) -> _FileLake:
    """A lake whose joint-state table holds ``files`` real Parquet objects (each one episode's
    samples; ``episodes`` distinct contents, so every object's key is its own and its bytes
    are a real writer-encoded file), plus the index rows of those episodes."""
    fresh, tables = _lake(endpoints, "bench-files")
    name = layout.shard_table("joint_state.v1")
    index = synthetic_index_day(FIRST_DAY, episodes, seed, fresh.catalog_namespace)
    ids = index["episode_id"].to_pylist()
    contents = [encode_parquet(_joint_rows(tables, e, FIRST_DAY, 50)) for e in ids]
    metadata = tables.load(name).metadata
    token = uuid.uuid4().hex[:8]
    keys = [
        layout.data_file_key(fresh.catalog_namespace, name, FIRST_DAY, "bench", i % 16, i, 0, token)
        for i in range(files)
    ]
    began = time.perf_counter()
    _upload(fresh, [(key, contents[i % episodes]) for i, key in enumerate(keys)])
    uploaded = time.perf_counter()
    with _quiet_statistics():
        templates = [
            data_file(metadata, f"s3://{fresh.s3_bucket}/{keys[i]}", contents[i])
            for i in range(min(episodes, files))
        ]
    entries = [
        _moved(templates[i % episodes], f"s3://{fresh.s3_bucket}/{key}")
        for i, key in enumerate(keys)
    ]
    _append(tables, name, entries)
    # What the writer would have counted: every file is one episode's, all of its bytes.
    stored = [0] * episodes
    for i in range(files):
        stored[i % episodes] += len(contents[i % episodes])
    column = index.schema.get_field_index("stored_bytes")
    index = index.set_column(column, "stored_bytes", pa.array(stored, pa.int64()))
    _commit_index(fresh, tables, [index])
    return _FileLake(fresh, files, uploaded - began, time.perf_counter() - uploaded)


def _timed(call: Callable[[], object]) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def _exporter_scans(
    lakes: Sequence[_FileLake], repeats: int
) -> tuple[list[float], list[list[float]]]:
    """Cold scan of each lake, then ``repeats`` warm rounds alternating between the lakes."""
    exporters = [Exporter(ExporterSettings(), lake.endpoints) for lake in lakes]
    cold = []
    for lake, exporter in zip(lakes, exporters, strict=True):
        began = time.perf_counter()
        inventory = exporter.scan_once()
        cold.append(time.perf_counter() - began)
        if inventory.shard_files != lake.files:
            raise RuntimeError(
                f"the exporter counted {inventory.shard_files} data files, {lake.files} were "
                "committed"
            )
    warm: list[list[float]] = [[] for _ in lakes]
    for repeat in range(repeats):
        order = range(len(lakes)) if repeat % 2 == 0 else reversed(range(len(lakes)))
        for i in order:
            warm[i].append(_timed(exporters[i].scan_once))
    return cold, warm


# -- the query ------------------------------------------------------------------------------


@dataclass
class _IndexLake:
    endpoints: Endpoints
    episodes: int
    files: int
    megabytes: float
    build_s: float
    expected: int


def _index_lake(endpoints: Endpoints, episodes: int, per_day: int, query: IndexQuery) -> _IndexLake:
    """A lake whose index holds ``episodes`` synthetic episodes, one compacted file per date,
    appended in commits of 100 dates (as a lake compacted day by day looks)."""
    began = time.perf_counter()
    fresh, tables = _lake(endpoints, "bench-index")
    expected = 0
    batch: list[pa.Table] = []
    for n, (day, count) in enumerate(index_days(episodes, per_day)):
        rows = synthetic_index_day(day, count, n, fresh.catalog_namespace)
        expected += query.matches(rows)
        batch.append(rows)
        if len(batch) == 100:
            _commit_index(fresh, tables, batch)
            batch = []
    if batch:
        _commit_index(fresh, tables, batch)
    snapshot = tables.load(layout.INDEX_TABLE).current_snapshot()
    summary = snapshot.summary if snapshot is not None and snapshot.summary else None
    files = int(summary.get("total-data-files") or 0) if summary else 0
    size = int(summary.get("total-files-size") or 0) if summary else 0
    return _IndexLake(fresh, episodes, files, size / 1e6, time.perf_counter() - began, expected)


def _query(lake: _IndexLake, query: IndexQuery) -> float:
    """One query as an ML user runs it (a new reader: nothing cached), checked."""
    began = time.perf_counter()
    found = RobolakeDataset.open(endpoints=lake.endpoints).episodes(query.criteria())
    elapsed = time.perf_counter() - began
    if len(found) != lake.expected:
        raise RuntimeError(
            f"the query over {lake.episodes} episodes found {len(found)}, {lake.expected} "
            "were generated to match"
        )
    return elapsed


# -- the readers ----------------------------------------------------------------------------


async def _drain(
    endpoints: Endpoints, workdir: Path, topic: str, record: str, ends: dict[TopicPartition, int]
) -> None:
    """Run a writer with ``--record record`` until it has committed every record of ``topic``."""
    group = f"bench-{record}-{topic}"
    port = free_port()
    service = Service.start(
        [
            "writer",
            "--metrics-port",
            str(port),
            "--group",
            group,
            "--flush-age",
            "2",
            "--record",
            record,
        ],
        bench_env(endpoints, topic, workdir / "none.json"),
        workdir / f"writer-{record}.log",
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=endpoints.kafka_bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            offsets = await admin.list_consumer_group_offsets(group)
            committed = {tp: meta.offset for tp, meta in offsets.items() if tp.topic == topic}
            if all(committed.get(tp, 0) >= end for tp, end in ends.items()):
                return
            service.process.check()
            await asyncio.sleep(0.2)
        raise RuntimeError(f"the {record} writer did not drain {topic} in 900 s")
    finally:
        await admin.close()
        await service.stop()


def _read_frames(open_reader: Callable[[], RobolakeDataset]) -> tuple[list[str], int]:
    """Every episode as aligned frames: the episode ids read and the frames counted."""
    data = open_reader()
    episodes = data.episodes()
    frames = 0
    for episode in episodes:
        frames += episode_frames(data, episode, FRAME_RATE_HZ).num_rows
    return [e.episode_id for e in episodes], frames


async def _reader_comparison(
    endpoints: Endpoints, workdir: Path, plan: LakePlan
) -> tuple[int, int, list[float], list[float]]:
    """(episodes, frames, pinned seconds, listing seconds) over the same episodes."""
    topic = f"bench-readers-{uuid.uuid4().hex[:8]}"
    await ensure_topics(
        endpoints.kafka_bootstrap,
        [TopicSpec(topic, 4, {"max.message.bytes": str(MAX_RECORD_BYTES)})],
    )
    await prefill(endpoints, topic, plan.reader_mb * 1_000_000, RECORD_BYTES)
    probe = AIOKafkaConsumer(bootstrap_servers=endpoints.kafka_bootstrap)
    await probe.start()
    try:
        ends = await probe.end_offsets([TopicPartition(topic, p) for p in range(4)])
    finally:
        await probe.stop()
    tables_endpoints, _ = await asyncio.to_thread(_lake, endpoints, "bench-pinned")
    bucket_endpoints = fresh_dataset(endpoints, "bench-listing")
    ensure_bucket(bucket_endpoints)
    await _drain(tables_endpoints, workdir, topic, "tables", ends)
    await _drain(bucket_endpoints, workdir, topic, "bucket", ends)
    if not storage.uses_tables(tables_endpoints) or storage.uses_tables(bucket_endpoints):
        raise RuntimeError("the two datasets are not one of each layout")
    readers: dict[str, Callable[[], RobolakeDataset]] = {
        "pinned": lambda: RobolakeDataset.open(endpoints=tables_endpoints).pinned(),
        "listing": lambda: RobolakeDataset.open(endpoints=bucket_endpoints),
    }
    seconds: dict[str, list[float]] = {"pinned": [], "listing": []}
    seen: dict[str, tuple[list[str], int]] = {}
    for repeat in range(plan.reader_repeats):
        order = ["pinned", "listing"] if repeat % 2 == 0 else ["listing", "pinned"]
        for name in order:
            began = time.perf_counter()
            seen[name] = await asyncio.to_thread(_read_frames, readers[name])
            seconds[name].append(time.perf_counter() - began)
    if seen["pinned"] != seen["listing"] or not seen["pinned"][1]:
        raise RuntimeError(
            f"the readers disagree: pinned read {len(seen['pinned'][0])} episodes, "
            f"{seen['pinned'][1]} frames; listing {len(seen['listing'][0])}, "
            f"{seen['listing'][1]}"
        )
    ids, frames = seen["pinned"]
    for dataset in (tables_endpoints, bucket_endpoints):
        await asyncio.to_thread(drop_dataset, dataset)
    return len(ids), frames, seconds["pinned"], seconds["listing"]


def the_query(episodes: int, per_day: int) -> IndexQuery:
    """Warehouse episodes of one task family on the newest day: what an ML user asks of a
    growing lake (the answer stays the size of a day's, whatever the lake's age)."""
    last_day = index_days(episodes, per_day)[-1][0]
    return IndexQuery(scene="warehouse", task="red box", day=last_day)


async def lake_scale(
    endpoints: Endpoints, workdir: Path, plan: LakePlan, progress: Callable[[str], None]
) -> LakeFigures:
    """Measure the three figures of :mod:`robolake.bench.lake` with ``plan``'s sizes."""
    progress(f"readers: {plan.reader_mb} MB of episodes, written as tables and as a bucket")
    n_episodes, frames, pinned_s, listing_s = await _reader_comparison(endpoints, workdir, plan)

    progress(f"exporter: lakes of {plan.files_small} and {plan.files_large} data files")
    small = await asyncio.to_thread(_file_lake, endpoints, plan.files_small, plan.file_episodes, 1)
    large = await asyncio.to_thread(_file_lake, endpoints, plan.files_large, plan.file_episodes, 1)
    progress(
        f"exporter: {large.files} files uploaded in {large.upload_s:.1f} s, committed in "
        f"{large.commit_s:.1f} s; scanning"
    )
    cold, warm = await asyncio.to_thread(_exporter_scans, [small, large], plan.scan_repeats)
    for file_lake in (small, large):
        await asyncio.to_thread(drop_dataset, file_lake.endpoints)

    progress(f"episode query: indexes of {plan.episodes_small} and {plan.episodes_large} episodes")
    queries = [
        the_query(n, plan.episodes_per_day) for n in (plan.episodes_small, plan.episodes_large)
    ]
    index_small = await asyncio.to_thread(
        _index_lake, endpoints, plan.episodes_small, plan.episodes_per_day, queries[0]
    )
    index_large = await asyncio.to_thread(
        _index_lake, endpoints, plan.episodes_large, plan.episodes_per_day, queries[1]
    )
    timings: list[list[float]] = [[], []]
    for repeat in range(plan.query_repeats):
        order = [0, 1] if repeat % 2 == 0 else [1, 0]
        for i in order:
            lake = (index_small, index_large)[i]
            timings[i].append(await asyncio.to_thread(_query, lake, queries[i]))
    for index_lake in (index_small, index_large):
        await asyncio.to_thread(drop_dataset, index_lake.endpoints)
    return LakeFigures(
        reader_episodes=n_episodes,
        reader_frames=frames,
        pinned_frames_per_s=frames / statistics.median(pinned_s),
        listing_frames_per_s=frames / statistics.median(listing_s),
        files_small=small.files,
        files_large=large.files,
        upload_large_s=large.upload_s,
        commit_large_s=large.commit_s,
        scan_small_s=statistics.median(warm[0]),
        scan_large_s=statistics.median(warm[1]),
        cold_scan_small_s=cold[0],
        cold_scan_large_s=cold[1],
        episodes_small=index_small.episodes,
        episodes_large=index_large.episodes,
        index_files_large=index_large.files,
        index_mb_large=index_large.megabytes,
        build_large_s=index_large.build_s,
        query_small_s=statistics.median(timings[0]),
        query_large_s=statistics.median(timings[1]),
        query_matches_small=index_small.expected,
        query_matches_large=index_large.expected,
        seconds={
            "pinned": pinned_s,
            "listing": listing_s,
            "scan_small": warm[0],
            "scan_large": warm[1],
            "query_small": timings[0],
            "query_large": timings[1],
        },
    )
