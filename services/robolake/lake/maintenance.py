"""Table maintenance: compaction, snapshot expiry and orphan removal for robolake's tables.

Every writer flush commits one small file per stream type per date, so the tables fill with
small files, a snapshot per flush, and files no snapshot needs any more. Three jobs keep them
healthy (``docs/maintenance.md``):

- **Compaction** rewrites the small files of *closed* partitions (a ``date`` old enough that
  writers have moved on) into files near :data:`~robolake.lake.schema.TARGET_FILE_BYTES`, one
  atomic snapshot per table partition: the snapshot deletes the old files and adds the new ones,
  so a reader sees the rows exactly once before and after, never a gap or a duplicate. Files are
  sized by their real compressed bytes (pyiceberg's ``write.target-file-size-bytes`` counts
  uncompressed Arrow bytes), written in the table's file schema with its field ids, rows in the
  sort order, with the shard contract's Parquet options.
- **Snapshot expiry** drops old snapshots from the metadata (pyiceberg's ``expire_snapshots``
  removes metadata only) but always keeps the current snapshot and the newest one carrying the
  ``robolake.*`` summary keys: the writer finds its position there.
- **Orphan removal** (pyiceberg has none) deletes objects under a table's location that no
  retained snapshot references, and the writer checkpoints no retained index snapshot names,
  once older than a retention.

Why compaction commits the way it does: pyiceberg 0.12 retries a conflicting commit by itself,
re-applying the snapshot it built against the old parent -- the summary would carry offsets the
concurrent writer commit has since moved (rewinding them), and nothing would re-check that the
rewritten files are still live. So commits run with the table's retries off
(:func:`~robolake.lake.commits.without_retries`) and retry here: refresh, re-check every file to
replace is still live (if one vanished -- another compaction, an erasure -- the group is dropped
and replanned next run), copy the newest ``robolake.*`` keys forward
(:func:`~robolake.lake.offsets.carried_all`), commit again. A writer append that landed in
between is in the refreshed snapshot and stays: the rewrite deletes only the files it read.

Compaction of a partition still written to is correct, only wasteful (it conflicts with the
writers and rewrites again later), which is why only closed partitions are rewritten.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import logging
import math
import random
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import MinioException
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
)
from pyiceberg.exceptions import (
    CommitFailedException,
    CommitStateUnknownException,
    NoSuchTableError,
    ValidationException,
)
from pyiceberg.manifest import DataFile, DataFileContent, ManifestContent
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Operation, Summary, ancestors_of
from pyiceberg.table.update.snapshot import _OverwriteFiles
from pyiceberg.typedef import EMPTY_DICT

from robolake.endpoints import Endpoints
from robolake.episode.errors import ContractViolation
from robolake.episode.shards import (
    SORT_KEYS,
    episodes_index,
    parquet_write_options,
    rows_per_row_group,
    shard_schema,
)
from robolake.episode.stream_types import default_registry
from robolake.lake import layout
from robolake.lake.catalog import UNAVAILABLE as CATALOG_UNAVAILABLE
from robolake.lake.catalog import LakeTables
from robolake.lake.commits import data_file, without_retries
from robolake.lake.errors import CatalogUnavailable, LakeError
from robolake.lake.offsets import CHECKPOINTS_KEY, carried_all
from robolake.lake.schema import DATE_COLUMN, TARGET_FILE_BYTES, conform, table_arrow_schema
from robolake.lake.schema import with_field_ids as _with_field_ids
from robolake.metrics_http import serve_metrics

log = logging.getLogger(__name__)

#: The catalog or the bucket did not answer, or answered with an error (a missing object among
#: them): the table is skipped this run and retried the next, never a crash of the service.
UNAVAILABLE: Final = (*CATALOG_UNAVAILABLE, MinioException, urllib3.exceptions.HTTPError)

#: Fault injection for tests: seconds to hold still after each compacted file is uploaded (and
#: before the commit), so a test can kill ``robolake compact`` mid-run.
ENV_COMPACT_PAUSE: Final = "ROBOLAKE_COMPACT_PAUSE"
#: Iceberg's defaults: ``history.expire.max-snapshot-age-ms`` (5 days) and the orphan
#: retention of Spark's ``remove_orphan_files`` (3 days).
DEFAULT_SNAPSHOT_RETENTION_S: Final = 5 * 86400.0
DEFAULT_ORPHAN_RETENTION_S: Final = 3 * 86400.0
#: A partition whose newest file is younger than this is still open (late flushes).
DEFAULT_MIN_AGE_S: Final = 3600.0
#: Next to the writer's 9464 and the exporter's 9465.
DEFAULT_METRICS_PORT: Final = 9466
MAX_ATTEMPTS: Final = 30
PARQUET_CONTENT_TYPE: Final = "application/vnd.apache.parquet"
PART_BYTES: Final = 64 * 1024 * 1024
#: A bin (the files merged, sorted and cut into compacted files together) holds up to this many
#: targets of input: merging compresses better, so a bin of one target would make files well
#: below it. Memory: a bin's files, decoded and sorted, are in memory at once.
BIN_FACTOR: Final = 2
#: Checkpoint keys of table-mode writers: topic, partition, first offset, flush, 12-hex token.
#: The listing layout's checkpoints (no token) are never touched here.
_TABLE_CHECKPOINT: Final = re.compile(
    re.escape(layout.CHECKPOINT_ROOT) + r"[^/]+/\d{3}/\d{19}-\d{10}-[0-9a-f]{12}\.json"
)

Task = Literal["compact", "expire", "orphans"]
TASKS: Final[tuple[Task, ...]] = get_args(Task)


def compacted_key(prefix: str, date: dt.date | None) -> str:
    """Bucket key of a new compacted file of the table at ``prefix``."""
    return layout.rewritten_key(prefix, date, "compacted")


# -- metrics -------------------------------------------------------------------------------------


class MaintenanceMetrics:
    """Metrics of ``robolake compact`` in service mode, on their own registry.

    Labels: ``table`` (robolake's tables: one per stream type version plus the index, tens) and
    ``task`` (compact, expire, orphans).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.data_files = Gauge(
            "robolake_maintenance_table_data_files",
            "Data files in the table's current snapshot (from its summary).",
            ["table"],
            registry=r,
        )
        self.average_file_bytes = Gauge(
            "robolake_maintenance_table_average_file_bytes",
            "Average data file size of the table's current snapshot, in bytes.",
            ["table"],
            registry=r,
        )
        self.snapshots = Gauge(
            "robolake_maintenance_table_snapshots",
            "Snapshots in the table's metadata (expiry bounds them).",
            ["table"],
            registry=r,
        )
        self.rewritten_bytes = Counter(
            "robolake_maintenance_compaction_rewritten_bytes",
            "Bytes of small data files replaced by compaction (committed).",
            ["table"],
            registry=r,
        )
        self.written_bytes = Counter(
            "robolake_maintenance_compaction_written_bytes",
            "Bytes of compacted data files committed.",
            ["table"],
            registry=r,
        )
        self.rewritten_files = Counter(
            "robolake_maintenance_compaction_rewritten_files",
            "Small data files replaced by compaction (committed).",
            ["table"],
            registry=r,
        )
        self.conflicts = Counter(
            "robolake_maintenance_commit_conflicts",
            "Compaction commits that conflicted with another commit and were re-checked.",
            registry=r,
        )
        self.expired_snapshots = Counter(
            "robolake_maintenance_expired_snapshots",
            "Snapshots removed from table metadata by expiry.",
            ["table"],
            registry=r,
        )
        self.orphan_files = Counter(
            "robolake_maintenance_orphan_files_removed",
            "Objects removed because no retained snapshot references them (data, metadata, "
            "writer checkpoints).",
            registry=r,
        )
        self.orphan_bytes = Counter(
            "robolake_maintenance_orphan_bytes_removed",
            "Bytes of the objects orphan removal deleted.",
            registry=r,
        )
        self.last_success = Gauge(
            "robolake_maintenance_last_success_timestamp_seconds",
            "Unix time of the last run of each task (compact, expire, orphans) that completed "
            "without an error.",
            ["task"],
            registry=r,
        )
        self.failures = Counter(
            "robolake_maintenance_failures",
            "Runs of a task (compact, expire, orphans) that failed on some table (retried next "
            "cycle).",
            ["task"],
            registry=r,
        )
        for task in TASKS:
            self.failures.labels(task)


# -- the object store ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    modified: dt.datetime


class Bucket:
    """The dataset bucket through the ``minio`` client, for the few calls maintenance makes.

    Its own client rather than the writer's store or the readers' filesystem: the lake package
    imports no service (``docs/architecture.md``, rule 4).
    """

    def __init__(self, endpoints: Endpoints) -> None:
        self.name = endpoints.s3_bucket
        self._client = Minio(
            endpoints.s3_host,
            access_key=endpoints.s3_access_key,
            secret_key=endpoints.s3_secret_key,
            secure=endpoints.s3_secure,
            region=endpoints.s3_region,
        )

    def get(self, key: str) -> bytes:
        response = self._client.get_object(self.name, key)
        try:
            return bytes(response.read())
        finally:
            response.close()
            response.release_conn()

    def put(self, key: str, data: bytes) -> None:
        self._client.put_object(
            self.name,
            key,
            io.BytesIO(data),
            len(data),
            content_type=PARQUET_CONTENT_TYPE,
            part_size=PART_BYTES,
        )

    def list(self, prefix: str) -> Iterator[StoredObject]:
        for obj in self._client.list_objects(self.name, prefix=prefix, recursive=True):
            if obj.object_name is None or obj.is_dir:
                continue
            modified = obj.last_modified or dt.datetime.now(dt.UTC)
            yield StoredObject(str(obj.object_name), int(obj.size or 0), modified)

    def remove(self, keys: Sequence[str]) -> None:
        """Delete ``keys``; raises if any deletion failed (the errors come back lazily)."""
        errors = list(self._client.remove_objects(self.name, (DeleteObject(k) for k in keys)))
        if errors:
            raise LakeError(f"could not delete {len(errors)} objects, e.g. {errors[0]}")


# -- compaction ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompactionSettings:
    """What compaction rewrites, and into what."""

    #: Compacted files aim at this many compressed bytes.
    target_file_bytes: int = TARGET_FILE_BYTES
    #: Files at least this big are left alone (default: three quarters of the target, as
    #: Iceberg's ``min-file-size-bytes``).
    min_file_bytes: int | None = None
    #: A partition is rewritten only if it has at least this many small files.
    min_input_files: int = 2
    #: The newest ``grace_days`` UTC dates are open (1: today; 0: no date is open by date).
    grace_days: int = 1
    #: A partition whose newest file was committed less than this ago is open.
    min_age_s: float = DEFAULT_MIN_AGE_S
    #: Fault injection (``ROBOLAKE_COMPACT_PAUSE``).
    pause_s: float = 0.0

    def __post_init__(self) -> None:
        if self.target_file_bytes <= 0:
            raise LakeError("the target file size must be positive")
        if self.min_input_files < 2:
            raise LakeError("compaction needs at least 2 input files per partition")
        if self.grace_days < 0 or self.min_age_s < 0:
            raise LakeError("grace days and minimum age cannot be negative")

    @property
    def small_file_bytes(self) -> int:
        if self.min_file_bytes is not None:
            return self.min_file_bytes
        return self.target_file_bytes * 3 // 4


@dataclass(frozen=True)
class LiveFile:
    """A data file of the current snapshot, and when the snapshot that added it was made."""

    file: DataFile
    #: Commit time of the snapshot that added it (0 if that snapshot was expired).
    added_ms: int

    @property
    def path(self) -> str:
        return str(self.file.file_path)

    @property
    def size(self) -> int:
        return int(self.file.file_size_in_bytes)


PartitionKey = tuple[int, tuple[object, ...]]  # spec id, partition values


@dataclass
class Partition:
    """The live files of one partition of one table."""

    spec_id: int
    values: tuple[object, ...]
    date: dt.date | None
    files: list[LiveFile] = field(default_factory=list)
    #: Delete files apply here: a rewrite would have to apply them; left alone.
    has_deletes: bool = False


@dataclass(frozen=True)
class PartitionResult:
    """What compaction did to one partition."""

    table: str
    date: dt.date | None
    outcome: Literal["compacted", "replan", "failed"]
    files_in: int = 0
    files_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    rows: int = 0
    conflicts: int = 0
    snapshot_id: int | None = None
    #: Whether other commits landed between planning and committing (the rewrite was then
    #: committed on top of them, their files kept).
    rebased: bool = False


class _ReplaceFiles(_OverwriteFiles):
    """pyiceberg's overwrite producer, committed as a ``replace`` snapshot (Iceberg's operation
    for compaction: same rows, other files), so incremental readers skip it as they skip Spark's
    ``rewrite_data_files``. pyiceberg 0.12 computes summary totals only for append, overwrite
    and delete, so totals are computed as an overwrite and the operation set afterwards."""

    def _summary(self, snapshot_properties: dict[str, str] = EMPTY_DICT) -> Summary:
        summary = super()._summary(snapshot_properties)
        return Summary(Operation.REPLACE, **summary.additional_properties)


def _date_of(spec_fields: Sequence[str], values: tuple[object, ...]) -> dt.date | None:
    if DATE_COLUMN not in spec_fields:
        return None
    value = values[spec_fields.index(DATE_COLUMN)]
    if isinstance(value, int):
        return dt.date(1970, 1, 1) + dt.timedelta(days=value)
    return value if isinstance(value, dt.date) else None


def partitions(table: Table) -> list[Partition]:
    """The current snapshot's live files by partition, with when each was added."""
    metadata = table.metadata
    snapshot = metadata.current_snapshot()
    if snapshot is None:
        return []
    specs = metadata.specs()
    found: dict[PartitionKey, Partition] = {}

    def partition_of(spec_id: int, values: tuple[object, ...]) -> Partition:
        key = (spec_id, values)
        part = found.get(key)
        if part is None:
            names = [f.name for f in specs[spec_id].fields]
            part = found[key] = Partition(spec_id, values, _date_of(names, values))
        return part

    for manifest in snapshot.manifests(table.io):
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            file = entry.data_file
            values = tuple(file.partition[i] for i in range(len(file.partition)))
            part = partition_of(file.spec_id, values)
            if manifest.content == ManifestContent.DELETES or file.content != DataFileContent.DATA:
                part.has_deletes = True
                continue
            added = metadata.snapshot_by_id(entry.snapshot_id) if entry.snapshot_id else None
            part.files.append(LiveFile(file, added.timestamp_ms if added is not None else 0))
    return sorted(found.values(), key=lambda p: (p.spec_id, str(p.values)))


def bins(files: Sequence[LiveFile], target: int) -> list[list[LiveFile]]:
    """Files packed in path order (a writer's files of one partition, in offset order) into
    groups of at most ``target`` bytes; a file bigger than that is a group by itself."""
    groups: list[list[LiveFile]] = []
    current: list[LiveFile] = []
    size = 0
    for file in sorted(files, key=lambda f: f.path):
        if current and size + file.size > target:
            groups.append(current)
            current, size = [], 0
        current.append(file)
        size += file.size
    if current:
        groups.append(current)
    return groups


def file_schema(name: str, table: Table) -> pa.Schema:
    """The file schema compacted files of ``name`` are written in: the contract's columns as the
    table holds them, with the table's field ids.

    Refuses (LakeError) when the table and this robolake version disagree on the columns: a
    column the table has and the contract lacks would be dropped by a rewrite (data loss), one
    the contract has and the table lacks is not evolved by maintenance (writers evolve tables).
    """
    if name == layout.INDEX_TABLE:
        contract = episodes_index().schema
    else:
        key = layout.stream_type_of(name)
        if key is None:
            raise LakeError(f"{name} is not a robolake table")
        type_name, _, version = key.rpartition(".v")
        try:
            contract = shard_schema(default_registry().get(type_name, int(version)))
        except ContractViolation as exc:
            raise LakeError(f"{name}: stream type {key} is not in this contract") from exc
    arrow = table_arrow_schema(contract)
    try:
        schema = _with_field_ids(arrow, table.schema())
    except ValueError as exc:
        raise LakeError(f"{name}: {exc}") from exc
    extra = {f.name for f in table.schema().fields} - set(schema.names)
    if extra:
        raise LakeError(
            f"{name} has columns {sorted(extra)} this robolake version does not know; rewriting "
            "would drop them: upgrade robolake before compacting"
        )
    return schema


def encode(rows: pa.Table, target_bytes: int) -> Iterator[bytes]:
    """Parquet files of ``rows`` (sorted) near ``target_bytes`` each, with the shard contract's
    options and row-group size (as the writer's).

    The real compressed size decides where a file ends (:func:`encode_slices`). Merged rows
    compress better than the small files they came from (measured: 2.3 MB of writer files made
    1.1 MB), so bins hold more input than the target (:data:`BIN_FACTOR`) and this cut makes the
    files near the target whatever the ratio.
    """
    per_slice = _rows_per_slice(rows.nbytes / rows.num_rows if rows.num_rows else 1.0, target_bytes)
    slices = (rows.slice(start, end - start) for start, end in _slices(rows, per_slice))
    return encode_slices(rows.schema, slices, target_bytes)


def _rows_per_slice(average_row_bytes: float, target_bytes: int) -> int:
    """Rows of a slice (a row group): the contract's row-group size, and at most a quarter of the
    target, so files end near the target even when the target is below the contract's row-group
    size (tests, small tables)."""
    average = max(average_row_bytes, 1.0)
    return max(1, min(rows_per_row_group(average), int(target_bytes / 4 // average)))


def encode_slices(
    schema: pa.Schema, slices: Iterable[pa.Table], target_bytes: int
) -> Iterator[bytes]:
    """Parquet files of ``slices`` (sorted rows, one row group each) near ``target_bytes``: a
    new file starts when the next slice would take this one past the target, by the real
    compressed size."""
    options = parquet_write_options(schema)
    sink = io.BytesIO()
    writer: pq.ParquetWriter | None = None
    last = 0
    for piece in slices:
        if writer is not None and sink.tell() + last > target_bytes:
            writer.close()
            yield sink.getvalue()
            sink, writer = io.BytesIO(), None
        if writer is None:
            writer = pq.ParquetWriter(sink, schema, **options)
        before = sink.tell()
        writer.write_table(piece, row_group_size=max(1, piece.num_rows))
        last = sink.tell() - before
    if writer is not None:
        writer.close()
        yield sink.getvalue()


_FILE: Final = "__robolake_file"
_ROW: Final = "__robolake_row"


class _Input:
    """One input file of a merge: its row groups, decoded on demand, conformed to the schema."""

    def __init__(self, data: bytes, schema: pa.Schema, date: dt.date) -> None:
        self.file = pq.ParquetFile(pa.BufferReader(data))
        self.schema = schema
        self.date = date
        metadata = self.file.metadata
        sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
        self.starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self.num_rows = int(self.starts[-1])
        self.uncompressed = sum(
            metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups)
        )
        self._cache: dict[int, pa.Table] = {}

    def keys(self, key_schema: pa.Schema) -> pa.Table:
        present = [k for k in key_schema.names if k in self.file.schema_arrow.names]
        return conform(self.file.read(columns=present), key_schema, self.date)

    def take(self, rows: npt.NDArray[np.int64]) -> pa.Table:
        """Rows ``rows`` (ascending row numbers) in that order; row groups wholly before the
        last of them are dropped from the cache (a sorted file is read front to back once)."""
        groups = np.searchsorted(self.starts, rows, side="right") - 1
        pieces = []
        for group in np.unique(groups):
            g = int(group)
            if g not in self._cache:
                self._cache[g] = conform(self.file.read_row_group(g), self.schema, self.date)
            local = rows[groups == group] - self.starts[g]
            first, count = int(local[0]), len(local)
            if int(local[-1]) - first + 1 == count:  # a run of rows: a slice, no copy
                pieces.append(self._cache[g].slice(first, count))
            else:
                pieces.append(self._cache[g].take(pa.array(local)))
        done = int(rows[-1]) + 1
        for g in [g for g in self._cache if self.starts[g + 1] <= done]:
            del self._cache[g]
        return pa.concat_tables(pieces)


def merged_slices(
    files: Sequence[bytes], schema: pa.Schema, date: dt.date, target_bytes: int
) -> tuple[int, Iterator[pa.Table]]:
    """The rows of ``files`` sorted by the table's sort keys, in slices (row groups): the row
    count, and the slices.

    Streaming, not in memory: only the key columns of every file are decoded at once (to find
    the order); each slice then takes its rows from the row groups that hold them, decoded on
    demand and dropped once passed. Every input file is sorted (the writer's and compaction's
    are), so a merge reads each file front to back and holds, besides the compressed inputs,
    about one row group per file whose key range the merge is in. Decoding whole bins at once
    needed ~3x their *decoded* size: the simulator's camera frames, which zstd compresses ~100x
    across episodes, made a 13.8 MB file hold 1.33 GB three times over. An unsorted input is
    still merged correctly, only re-reading row groups.
    """
    inputs = [_Input(data, schema, date) for data in files]
    names = [k for k in SORT_KEYS if k in schema.names]
    key_schema = pa.schema([schema.field(k) for k in names])
    keyed = []
    for number, source in enumerate(inputs):
        keys = source.keys(key_schema)
        keyed.append(
            keys.append_column(
                _FILE, pa.array(np.full(keys.num_rows, number, np.int32))
            ).append_column(_ROW, pa.array(np.arange(keys.num_rows, dtype=np.int64)))
        )
    order = pa.concat_tables(keyed).combine_chunks()
    del keyed
    order = order.take(
        pc.sort_indices(order, sort_keys=[(k, "ascending") for k in [*names, _FILE, _ROW]])
    )
    rows = sum(i.num_rows for i in inputs)
    average = sum(i.uncompressed for i in inputs) / rows if rows else 1.0
    per_slice = _rows_per_slice(average, target_bytes)

    def slices() -> Iterator[pa.Table]:
        sources = order.column(_FILE).to_numpy()
        numbers = order.column(_ROW).to_numpy()
        for start, end in _slices(order, per_slice):
            which, row = sources[start:end], numbers[start:end]
            position = np.empty(end - start, np.int64)
            pieces = []
            offset = 0
            for number in np.unique(which):
                mask = which == number
                asked = row[mask]
                # A sorted input's rows come in order: no dedup and no search needed.
                in_order = bool(np.all(asked[1:] > asked[:-1]))
                wanted = asked if in_order else np.unique(asked)
                pieces.append(inputs[int(number)].take(wanted))
                position[mask] = offset + (
                    np.arange(len(asked)) if in_order else np.searchsorted(wanted, asked)
                )
                offset += len(wanted)
            merged = pa.concat_tables(pieces)
            if np.array_equal(position, np.arange(end - start)):
                yield merged  # one input's run, or inputs that follow each other
            else:
                yield merged.take(pa.array(position))

    return rows, slices()


#: Rows of one chunk (or, in the index, of one episode) stay in one row group and one file.
_CHUNK_KEYS: Final = ("episode_id", "stream", "seq")


def _slices(rows: pa.Table, per_slice: int) -> list[tuple[int, int]]:
    """Row ranges of about ``per_slice`` rows of sorted ``rows``, each ending where a chunk
    ends, so no chunk is split over two row groups or files (readers fetch a chunk at once)."""
    n = rows.num_rows
    keys = [k for k in _CHUNK_KEYS if k in rows.column_names]
    if n <= 1 or not keys:
        return [(s, min(s + per_slice, n)) for s in range(0, n, per_slice)]
    changed = None
    for key in keys:
        column = rows.column(key)
        differs = pc.not_equal(column.slice(1), column.slice(0, n - 1))
        changed = differs if changed is None else pc.or_(changed, differs)
    assert changed is not None
    starts = [i + 1 for i in pc.indices_nonzero(changed).to_pylist()] + [n]
    ranges = []
    start = 0
    for boundary in starts:
        if boundary - start >= per_slice or boundary == n:
            ranges.append((start, boundary))
            start = boundary
    return ranges


class Maintenance:
    """Compaction, expiry and orphan removal over the tables of one namespace."""

    def __init__(
        self,
        tables: LakeTables,
        bucket: Bucket,
        *,
        metrics: MaintenanceMetrics | None = None,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.tables = tables
        self.bucket = bucket
        self.metrics = metrics or MaintenanceMetrics()
        self.stop = stop or threading.Event()
        self.clock = clock
        self.sleep = sleep
        #: Tables a task failed on since this object was made (one-shot runs exit 1 if any).
        self.errors = 0

    @classmethod
    def from_endpoints(
        cls,
        endpoints: Endpoints,
        *,
        metrics: MaintenanceMetrics | None = None,
        stop: threading.Event | None = None,
    ) -> Maintenance:
        return cls(
            LakeTables.from_endpoints(endpoints), Bucket(endpoints), metrics=metrics, stop=stop
        )

    def _names(self, names: Iterable[str] | None) -> list[str]:
        known = self.tables.names()
        if names is None:
            return known
        wanted = list(names)
        unknown = sorted(set(wanted) - set(known))
        if unknown:
            raise LakeError(f"no table {', '.join(unknown)} in namespace {self.tables.namespace}")
        return wanted

    # -- compaction ---------------------------------------------------------------------------

    def compact(
        self, settings: CompactionSettings, names: Iterable[str] | None = None
    ) -> list[PartitionResult]:
        """Rewrite the small files of every closed partition of the tables (all by default)."""
        results: list[PartitionResult] = []
        failed = False
        for name in self._names(names):
            if self.stop.is_set():
                break
            try:
                results.extend(self.compact_table(name, settings))
            except (LakeError, *UNAVAILABLE) as exc:
                failed = True
                log.error("compaction of %s failed: %s", name, exc)
                self.errors += 1
        if failed or any(r.outcome == "failed" for r in results):
            self.metrics.failures.labels("compact").inc()
        elif not self.stop.is_set():
            self.metrics.last_success.labels("compact").set(self.clock())
        return results

    def compact_table(self, name: str, settings: CompactionSettings) -> list[PartitionResult]:
        table = self.tables.load(name)
        if table.current_snapshot() is None:
            return []
        schema = file_schema(name, table)
        now = self.clock()
        newest_open = dt.datetime.fromtimestamp(now, dt.UTC).date() - dt.timedelta(
            days=settings.grace_days
        )
        default_spec = table.metadata.default_spec_id
        results = []
        for part in partitions(table):
            if self.stop.is_set():
                break
            small = [f for f in part.files if f.size < settings.small_file_bytes]
            if len(small) < settings.min_input_files:
                continue
            reason = None
            if part.has_deletes:
                reason = "has delete files"
            elif part.spec_id != default_spec:
                reason = "is in an older partition spec"
            elif settings.grace_days and part.date is not None and part.date > newest_open:
                reason = f"is within the newest {settings.grace_days} day(s)"
            elif max(f.added_ms for f in part.files) > (now - settings.min_age_s) * 1000:
                reason = f"had a file committed less than {settings.min_age_s:.0f} s ago"
            if reason is not None:
                log.debug(
                    "%s date=%s: %d small files, left open: it %s",
                    name,
                    part.date,
                    len(small),
                    reason,
                )
                continue
            capacity = settings.target_file_bytes * BIN_FACTOR
            groups = [g for g in bins(small, capacity) if len(g) > 1]
            if groups:
                results.append(self._compact_partition(name, part, groups, schema, settings))
        return results

    def _compact_partition(
        self,
        name: str,
        part: Partition,
        groups: list[list[LiveFile]],
        schema: pa.Schema,
        settings: CompactionSettings,
    ) -> PartitionResult:
        table = self.tables.load(name, refresh=False)
        prefix = layout.key_of(table.location(), self.bucket.name)
        current = table.current_snapshot()
        planned = current.snapshot_id if current is not None else None
        began = time.perf_counter()
        old = [f for group in groups for f in group]
        new: list[tuple[str, bytes]] = []
        rows = 0
        for group in groups:
            if self.stop.is_set():
                self._discard([k for k, _ in new])
                return PartitionResult(name, part.date, "replan")
            inputs = [self.bucket.get(self._key(f.path)) for f in group]
            expected = sum(int(f.file.record_count) for f in group)
            count, merged = merged_slices(
                inputs, schema, part.date or dt.date(1970, 1, 1), settings.target_file_bytes
            )
            if count != expected:
                raise LakeError(
                    f"{name} date={part.date}: read {count} rows from files whose "
                    f"manifests say {expected}; not rewriting"
                )
            rows += expected
            for data in encode_slices(schema, merged, settings.target_file_bytes):
                key = compacted_key(prefix, part.date)
                self.bucket.put(key, data)
                new.append((key, data))
                log.info(
                    "%s date=%s: wrote %s (%d bytes) from %d files of %d bytes",
                    name,
                    part.date,
                    key,
                    len(data),
                    len(group),
                    sum(f.size for f in group),
                )
                if settings.pause_s:
                    log.info(
                        "compaction paused %.1f s after uploading %s (fault injection)",
                        settings.pause_s,
                        key,
                    )
                    time.sleep(settings.pause_s)
            del merged, inputs
        result = self._commit(name, part, old, new, planned, settings.pause_s)
        seconds = time.perf_counter() - began
        if result.outcome == "compacted":
            self.metrics.rewritten_bytes.labels(name).inc(result.bytes_in)
            self.metrics.written_bytes.labels(name).inc(result.bytes_out)
            self.metrics.rewritten_files.labels(name).inc(result.files_in)
            log.info(
                "%s date=%s: %d files (%d bytes) -> %d files (%d bytes), %d rows, in one "
                "snapshot %s (%.1f s, %d conflicts)",
                name,
                part.date,
                result.files_in,
                result.bytes_in,
                result.files_out,
                result.bytes_out,
                result.rows,
                result.snapshot_id,
                seconds,
                result.conflicts,
            )
        return result

    def _key(self, path: str) -> str:
        return layout.key_of(path, self.bucket.name)

    def _commit(
        self,
        name: str,
        part: Partition,
        old: list[LiveFile],
        new: list[tuple[str, bytes]],
        planned: int | None,
        pause_s: float = 0.0,
        *,
        same_rows: bool = True,
    ) -> PartitionResult:
        """Replace ``old`` by ``new`` in one snapshot, re-checking on every attempt.

        ``same_rows``: a compaction (a ``replace`` snapshot, which incremental readers skip);
        False for a rewrite that removes rows (an erasure: an ``overwrite`` they must see).

        ``planned``: the snapshot the rewrite was planned on; ``pause_s``: fault injection, hold
        still once with the commit prepared, so a test's writer commit makes it conflict.
        """
        old_paths = {f.path for f in old}
        new_paths = [f"s3://{self.bucket.name}/{key}" for key, _ in new]
        bytes_in = sum(f.size for f in old)
        bytes_out = sum(len(data) for _, data in new)
        rows = sum(int(f.file.record_count) for f in old)

        def result(
            outcome: Literal["compacted", "replan", "failed"],
            snapshot_id: int | None = None,
            rebased: bool = False,
        ) -> PartitionResult:
            return PartitionResult(
                name,
                part.date,
                outcome,
                len(old),
                len(new),
                bytes_in,
                bytes_out,
                rows,
                conflicts,
                snapshot_id,
                rebased,
            )

        conflicts = 0
        for attempt in range(1, MAX_ATTEMPTS + 1):
            table = self.tables.load(name)  # the newest metadata: what the commit must match
            live = {
                f.path: f.file
                for p in partitions(table)
                for f in p.files
                if (p.spec_id, p.values) == (part.spec_id, part.values)
            }
            if all(p in live for p in new_paths) and not old_paths & live.keys():
                snapshot = table.current_snapshot()  # an attempt with a lost answer landed
                return result("compacted", snapshot.snapshot_id if snapshot else None, True)
            vanished = old_paths - live.keys()
            if vanished:
                log.warning(
                    "%s date=%s: %d of the files being rewritten are no longer live "
                    "(another compaction or a delete); dropping this rewrite, replanned "
                    "next run",
                    name,
                    part.date,
                    len(vanished),
                )
                self._discard([k for k, _ in new])
                return result("replan")
            metadata = table.metadata
            files = [
                data_file(metadata, path, data)
                for path, (_, data) in zip(new_paths, new, strict=True)
            ]
            transaction = without_retries(table).transaction()
            try:
                producer = _ReplaceFiles if same_rows else _OverwriteFiles
                with producer(
                    operation=Operation.OVERWRITE,
                    transaction=transaction,
                    io=table.io,
                    snapshot_properties=carried_all(metadata),
                ) as rewrite:
                    for path in sorted(old_paths):
                        rewrite.delete_data_file(live[path])
                    for file in files:
                        rewrite.append_data_file(file)
            except ValidationException as exc:  # pyiceberg's own check: a file to delete is gone
                log.warning("%s date=%s: %s; replanned next run", name, part.date, exc)
                self._discard([k for k, _ in new])
                return result("replan")
            if pause_s and attempt == 1:
                log.info(
                    "%s date=%s: commit prepared, pausing %.1f s (fault injection)",
                    name,
                    part.date,
                    pause_s,
                )
                time.sleep(pause_s)
            try:
                landed = transaction.commit_transaction()
            except CommitFailedException:
                conflicts += 1
                self.metrics.conflicts.inc()
                log.info(
                    "%s date=%s: commit conflict (attempt %d); re-checking",
                    name,
                    part.date,
                    attempt,
                )
                self.sleep(min(0.05 * 2 ** min(attempt, 6), 2.0) * (1 + random.random() / 4))
                continue
            except ValidationException as exc:  # pyiceberg's own check: a file to delete is gone
                log.warning("%s date=%s: %s; replanned next run", name, part.date, exc)
                self._discard([k for k, _ in new])
                return result("replan")
            except CommitStateUnknownException as exc:
                log.warning(
                    "%s date=%s: commit outcome unknown (%s); re-checking", name, part.date, exc
                )
                continue
            except UNAVAILABLE as exc:
                raise CatalogUnavailable(f"commit to {name} failed: {exc}") from exc
            self.tables.remember(name, landed)
            snapshot = landed.metadata.current_snapshot()
            if snapshot is None:
                raise LakeError(f"{name}: the commit landed without a snapshot")
            return result("compacted", snapshot.snapshot_id, snapshot.parent_snapshot_id != planned)
        log.error(
            "%s date=%s: %d commit attempts conflicted; left for the next run",
            name,
            part.date,
            MAX_ATTEMPTS,
        )
        return result("failed")

    def replace_files(
        self,
        name: str,
        part: Partition,
        old: list[LiveFile],
        new: list[tuple[str, bytes]],
        planned: int | None,
    ) -> PartitionResult:
        """Replace ``old`` files of ``part`` by ``new`` ones that hold fewer rows (an erasure),
        in one ``overwrite`` snapshot carrying the offsets forward; conflicts re-checked."""
        return self._commit(name, part, old, new, planned, same_rows=False)

    def _discard(self, keys: Sequence[str]) -> None:
        """Delete compacted files no commit references (best effort: orphan removal would)."""
        if not keys:
            return
        try:
            self.bucket.remove(keys)
        except (LakeError, *UNAVAILABLE) as exc:
            log.warning("could not delete %d uncommitted compacted files: %s", len(keys), exc)

    # -- snapshot expiry ----------------------------------------------------------------------

    def expire(
        self,
        retention_s: float = DEFAULT_SNAPSHOT_RETENTION_S,
        *,
        retain_last: int = 1,
        names: Iterable[str] | None = None,
    ) -> dict[str, int]:
        """Expire snapshots older than ``retention_s``: table -> snapshots removed.

        Kept whatever their age: every branch and tag head (the current snapshot), the newest
        ``retain_last`` snapshots of the current ancestry, and the newest snapshot of that
        ancestry carrying ``robolake.*`` summary keys -- the writer resumes from it, and without
        it would fall back to Kafka's committed offset. Metadata only: the files of expired
        snapshots stay until orphan removal.
        """
        if retain_last < 1:
            raise LakeError("at least the current snapshot is kept (retain_last >= 1)")
        removed: dict[str, int] = {}
        failed = False
        for name in self._names(names):
            if self.stop.is_set():
                break
            try:
                removed[name] = self._expire_table(name, retention_s, retain_last)
            except (LakeError, *UNAVAILABLE) as exc:
                failed = True
                log.error("snapshot expiry of %s failed: %s", name, exc)
                self.errors += 1
        if failed:
            self.metrics.failures.labels("expire").inc()
        elif not self.stop.is_set():
            self.metrics.last_success.labels("expire").set(self.clock())
        return removed

    def _expire_table(self, name: str, retention_s: float, retain_last: int) -> int:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            table = self.tables.load(name)
            metadata = table.metadata
            current = metadata.current_snapshot()
            if current is None:
                return 0
            keep = {ref.snapshot_id for ref in metadata.refs.values()}
            ancestry = list(ancestors_of(current, metadata))
            keep.update(s.snapshot_id for s in ancestry[:retain_last])
            for snapshot in ancestry:
                summary = snapshot.summary
                if summary is not None and any(
                    k.startswith("robolake.") for k in summary.additional_properties
                ):
                    keep.add(snapshot.snapshot_id)
                    break
            cutoff_ms = (self.clock() - retention_s) * 1000
            expired = [
                s.snapshot_id
                for s in metadata.snapshots
                if s.timestamp_ms < cutoff_ms and s.snapshot_id not in keep
            ]
            if not expired:
                return 0
            try:
                without_retries(table).maintenance.expire_snapshots().by_ids(expired).commit()
            except CommitFailedException:
                log.info("%s: expiry conflicted (attempt %d); re-planning", name, attempt)
                self.sleep(min(0.05 * 2 ** min(attempt, 6), 2.0))
                continue
            self.metrics.expired_snapshots.labels(name).inc(len(expired))
            log.info(
                "%s: expired %d snapshots older than %.0f s, kept %d",
                name,
                len(expired),
                retention_s,
                len(metadata.snapshots) - len(expired),
            )
            return len(expired)
        raise LakeError(f"expiry of {name} conflicted {MAX_ATTEMPTS} times in a row")

    # -- orphan removal -----------------------------------------------------------------------

    def remove_orphans(
        self,
        retention_s: float = DEFAULT_ORPHAN_RETENTION_S,
        *,
        names: Iterable[str] | None = None,
        checkpoints: bool = True,
        dry_run: bool = False,
    ) -> OrphanReport:
        """Delete what no retained snapshot references, once older than ``retention_s``.

        Per table: every object under its location (``data/`` and ``metadata/``) except the
        live data and delete files of every retained snapshot's manifests, those manifests, the
        manifest lists, the current and logged metadata files and the statistics files. With
        ``checkpoints``: the table-mode writer checkpoints (``_writer/checkpoints/``, with a
        writer token) no retained snapshot of any namespace's index table in this bucket names.

        The retention is the safety margin for what is being written right now (a writer's
        flush uploads before it commits; a commit writes metadata before it lands): keep it
        longer than any flush or commit takes. Objects are listed *before* the metadata is
        read, so whatever a commit made referenced meanwhile is in the references.
        """
        report = OrphanReport(dry_run=dry_run)
        cutoff = dt.datetime.fromtimestamp(self.clock() - retention_s, dt.UTC)
        failed = False
        for name in self._names(names):
            if self.stop.is_set():
                break
            try:
                self._remove_table_orphans(name, cutoff, report)
            except (LakeError, *UNAVAILABLE) as exc:
                failed = True
                log.error("orphan removal under %s skipped: %s", name, exc)
                self.errors += 1
        if checkpoints and not self.stop.is_set():
            try:
                self._remove_checkpoint_orphans(cutoff, report)
            except (LakeError, *UNAVAILABLE) as exc:
                failed = True
                log.error("checkpoint orphan removal skipped: %s", exc)
                self.errors += 1
        if failed:
            self.metrics.failures.labels("orphans").inc()
        elif not self.stop.is_set():
            self.metrics.last_success.labels("orphans").set(self.clock())
        return report

    def _remove_table_orphans(self, name: str, cutoff: dt.datetime, report: OrphanReport) -> None:
        table = self.tables.load(name, refresh=False)
        prefix = layout.key_of(table.location(), self.bucket.name).rstrip("/") + "/"
        stored = list(self.bucket.list(prefix))  # listed first, then the newest metadata
        referenced = self.referenced(self.tables.load(name))
        orphans = [o for o in stored if o.key not in referenced and o.modified < cutoff]
        report.kept += len(stored) - len(orphans)
        self._delete(orphans, report)

    def referenced(self, table: Table) -> set[str]:
        """Bucket keys of every file a retained snapshot of ``table`` needs.

        Any error reading a manifest list or manifest propagates: a partial set of references
        would make live files look orphaned.
        """
        metadata = table.metadata
        paths: set[str] = {table.metadata_location}
        paths.update(entry.metadata_file for entry in metadata.metadata_log)
        paths.update(s.statistics_path for s in metadata.statistics)
        paths.update(s.statistics_path for s in metadata.partition_statistics)
        for snapshot in metadata.snapshots:
            paths.add(snapshot.manifest_list)
            for manifest in snapshot.manifests(table.io):
                paths.add(manifest.manifest_path)
                for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                    paths.add(entry.data_file.file_path)
        keys = set()
        for path in paths:
            with contextlib.suppress(ValueError):  # another bucket: not ours to delete anyway
                keys.add(self._key(path))
        return keys

    def _remove_checkpoint_orphans(self, cutoff: dt.datetime, report: OrphanReport) -> None:
        stored = [
            o
            for o in self.bucket.list(layout.CHECKPOINT_ROOT)
            if _TABLE_CHECKPOINT.fullmatch(o.key)
        ]
        if not stored:
            return
        named = self._named_checkpoints()
        orphans = [o for o in stored if o.key not in named and o.modified < cutoff]
        report.kept += len(stored) - len(orphans)
        self._delete(orphans, report)

    def _named_checkpoints(self) -> set[str]:
        """Checkpoint keys named by a retained snapshot of the index table of *every* namespace
        of the catalog whose index lives in this bucket: the checkpoint root is bucket-wide, so
        another deployment's writer may share it."""
        catalog = self.tables.catalog
        named: set[str] = set()
        for namespace in catalog.list_namespaces():
            try:
                index = catalog.load_table((*namespace, layout.INDEX_TABLE))
            except NoSuchTableError:
                continue
            try:
                layout.key_of(index.location(), self.bucket.name)
            except ValueError:
                continue  # another bucket
            for snapshot in index.metadata.snapshots:
                summary = snapshot.summary
                if summary is None:
                    continue
                for key, value in summary.additional_properties.items():
                    if key.startswith(CHECKPOINTS_KEY.format(topic="")):
                        named.update(str(v) for v in _json_values(value))
        return named

    def _delete(self, orphans: Sequence[StoredObject], report: OrphanReport) -> None:
        if not orphans:
            return
        report.removed.extend(o.key for o in orphans)
        report.bytes += sum(o.size for o in orphans)
        if report.dry_run:
            return
        for start in range(0, len(orphans), 1000):
            self.bucket.remove([o.key for o in orphans[start : start + 1000]])
        self.metrics.orphan_files.inc(len(orphans))
        self.metrics.orphan_bytes.inc(sum(o.size for o in orphans))
        log.info(
            "removed %d orphans (%d bytes), e.g. %s",
            len(orphans),
            sum(o.size for o in orphans),
            orphans[0].key,
        )

    # -- gauges -------------------------------------------------------------------------------

    def observe(self, names: Iterable[str] | None = None) -> None:
        """Set the per-table gauges from each current snapshot's summary (no listing)."""
        for name in self._names(names):
            table = self.tables.load(name)
            snapshot = table.current_snapshot()
            summary = snapshot.summary if snapshot is not None else None
            files = int(summary.get("total-data-files") or 0) if summary else 0
            size = int(summary.get("total-files-size") or 0) if summary else 0
            self.metrics.data_files.labels(name).set(files)
            self.metrics.average_file_bytes.labels(name).set(size / files if files else 0.0)
            self.metrics.snapshots.labels(name).set(len(table.metadata.snapshots))


@dataclass
class OrphanReport:
    """What orphan removal deleted (or would delete, in a dry run)."""

    dry_run: bool = False
    removed: list[str] = field(default_factory=list)
    bytes: int = 0
    #: Objects looked at and kept (referenced, or younger than the retention).
    kept: int = 0


def _json_values(raw: str) -> list[object]:
    import json

    try:
        decoded = json.loads(raw)
    except ValueError as exc:
        raise LakeError(f"unreadable checkpoints map in a snapshot summary: {raw[:80]}") from exc
    return list(decoded.values()) if isinstance(decoded, dict) else []


# -- service mode --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cycle:
    """What one maintenance cycle runs."""

    compaction: CompactionSettings
    names: tuple[str, ...] | None = None
    #: Snapshot expiry after compaction (None: not run).
    expire_after_s: float | None = None
    retain_last: int = 1
    #: Orphan removal after expiry (None: not run).
    orphans_after_s: float | None = None


def run_cycle(maintenance: Maintenance, cycle: Cycle) -> None:
    """Compaction, then expiry, then orphan removal: expiry after compaction lets the files
    compaction replaced become orphans one cycle sooner."""
    names = list(cycle.names) if cycle.names is not None else None
    maintenance.compact(cycle.compaction, names)
    if cycle.expire_after_s is not None and not maintenance.stop.is_set():
        maintenance.expire(cycle.expire_after_s, retain_last=cycle.retain_last, names=names)
    if cycle.orphans_after_s is not None and not maintenance.stop.is_set():
        maintenance.remove_orphans(cycle.orphans_after_s, names=names)
    with contextlib.suppress(LakeError, *UNAVAILABLE):
        maintenance.observe(names)


async def serve(
    maintenance: Maintenance,
    cycle: Cycle,
    *,
    interval_s: float,
    metrics_host: str = "0.0.0.0",  # noqa: S104 - scraped by Prometheus from other hosts
    metrics_port: int | None = DEFAULT_METRICS_PORT,
    stop: asyncio.Event | None = None,
) -> int:
    """Run a cycle every ``interval_s`` seconds until SIGTERM/SIGINT (or ``stop``); returns
    the number of cycles run.

    A signal stops the loop between two partitions of a cycle (never inside a commit: a
    partition being rewritten is either committed or left as orphans for orphan removal) and
    the process exits 0.
    """
    cycles = 0
    async with contextlib.AsyncExitStack() as stack:
        if stop is None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
                stack.callback(loop.remove_signal_handler, sig)
        if metrics_port is not None:
            await serve_metrics(
                stack, maintenance.metrics.registry, metrics_host, metrics_port, error=LakeError
            )
            log.info("metrics on http://%s:%d/metrics", metrics_host, metrics_port)
        watcher = asyncio.create_task(_relay(stop, maintenance.stop))
        stack.callback(watcher.cancel)
        while not stop.is_set():
            began = time.monotonic()
            try:
                await asyncio.to_thread(run_cycle, maintenance, cycle)
            except (LakeError, *UNAVAILABLE) as exc:
                log.error("maintenance cycle failed: %s; retried in %.0f s", exc, interval_s)
            cycles += 1
            wait = max(0.0, interval_s - (time.monotonic() - began))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)
        log.info("maintenance stopped after %d cycles", cycles)
    return cycles


async def _relay(stop: asyncio.Event, flag: threading.Event) -> None:
    """Hand the loop's stop to the cycle running in a thread."""
    await stop.wait()
    flag.set()


def summarize(results: Sequence[PartitionResult]) -> str:
    """One line for the terminal."""
    done = [r for r in results if r.outcome == "compacted"]
    files_in = sum(r.files_in for r in done)
    files_out = sum(r.files_out for r in done)
    bytes_out = sum(r.bytes_out for r in done)
    average = bytes_out / files_out if files_out else 0.0
    return (
        f"compacted {len(done)} partitions: {files_in} files -> {files_out} files "
        f"({sum(r.bytes_in for r in done)} -> {bytes_out} bytes, average {math.floor(average)} "
        f"bytes); {sum(r.outcome != 'compacted' for r in results)} left for the next run"
    )
