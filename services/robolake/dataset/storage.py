"""Open the shards and the episodes index as pyarrow datasets: from the Iceberg tables, or
the original listing layout of a bucket.

This is the one place that knows how to reach the dataset: the audit, the operators' inventory
and the ML readers all go through it, so endpoint, credentials and addressing style are decided
once (``ROBOLAKE_*`` through :class:`~robolake.endpoints.Endpoints`).

**Tables first.** When a catalog is configured (``ROBOLAKE_CATALOG_URI``) and its namespace
holds the episodes index table, every read is planned from Iceberg metadata: the data files of
a table's current snapshot -- or of a pinned one (``snapshots``: table name -> snapshot id, for
reproducible training sets) -- with partition and column-statistics pruning for an episode's
rows. Nothing is listed, and a reader sees one consistent snapshot per table. Without tables
(a bucket written by ``--record bucket``) the listing layout of ``schemas/shards.md`` is read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import AlwaysTrue, BooleanExpression
from pyiceberg.manifest import DataFileContent, ManifestContent, ManifestFile
from pyiceberg.table import Table

from robolake.dataset.errors import DatasetError
from robolake.endpoints import Endpoints
from robolake.episode.ids import episode_date
from robolake.episode.shards import INDEX_PREFIX, SHARDS_PREFIX, shard_schema
from robolake.episode.shards import episodes_index as index_description
from robolake.episode.stream_types import default_registry
from robolake.lake import layout as lake_layout
from robolake.lake.catalog import LakeTables
from robolake.lake.errors import CatalogUnavailable
from robolake.lake.schema import DATE_COLUMN, table_arrow_schema

log = logging.getLogger(__name__)


def s3_filesystem(endpoints: Endpoints) -> pafs.S3FileSystem:
    """pyarrow's S3 filesystem for the endpoints (path-style addressing, as MinIO wants).

    Timeouts are explicit: once in a full test run (2026-11-22) a dataset listing waited
    forever on an S3 request with the AWS event loop idle; with a request timeout such a request
    fails and the SDK's retry sends it again instead of hanging the reader.
    """
    return pafs.S3FileSystem(
        access_key=endpoints.s3_access_key,
        secret_key=endpoints.s3_secret_key,
        endpoint_override=endpoints.s3_host,
        scheme="https" if endpoints.s3_secure else "http",
        region=endpoints.s3_region,
        force_virtual_addressing=False,
        connect_timeout=10.0,
        request_timeout=120.0,
    )


def bucket_from_url(url: str) -> str:
    """The bucket of a dataset URL, ``s3://bucket`` (a trailing slash is fine).

    The writer lays the dataset out at the root of its bucket, so a URL with a path below the
    bucket names no dataset; saying so early beats an empty listing later.
    """
    parsed = urlparse(url)
    path = parsed.path.strip("/")
    if parsed.scheme != "s3" or not parsed.netloc or path or parsed.query or parsed.fragment:
        raise DatasetError(
            f"dataset URL {url!r} is not of the form s3://BUCKET; the dataset lives at the root "
            "of its bucket (endpoint and credentials come from the ROBOLAKE_S3_* variables)"
        )
    return parsed.netloc


def endpoints_for_url(url: str | None, endpoints: Endpoints | None = None) -> Endpoints:
    """Endpoints pointing at the bucket of ``url``; without a URL, ``ROBOLAKE_S3_BUCKET``'s."""
    base = endpoints if endpoints is not None else Endpoints.from_env()
    if url is None:
        return base
    return dataclasses.replace(base, s3_bucket=bucket_from_url(url))


#: Pinned snapshot per table name, as :func:`current_snapshots` returns them.
Snapshots = Mapping[str, int]


#: Deployments found to have tables. Only a positive answer is kept: a reader started before
#: the first writer (an exporter, a test) must see the tables once they appear.
_FOUND: dict[Endpoints, LakeTables] = {}


def _lake(endpoints: Endpoints) -> LakeTables | None:
    """The deployment's tables, or None when it has none (no catalog, or no index table)."""
    if not endpoints.catalog_uri:
        return None
    found = _FOUND.get(endpoints)
    if found is not None:
        return found
    try:
        tables = LakeTables.from_endpoints(endpoints)
        if lake_layout.INDEX_TABLE not in tables.names():
            return None
    except CatalogUnavailable as exc:
        raise DatasetError(f"the Iceberg catalog does not answer: {exc}") from exc
    _FOUND[endpoints] = tables
    return tables


def uses_tables(endpoints: Endpoints) -> bool:
    """Whether reads of ``endpoints`` are planned from Iceberg tables."""
    return _lake(endpoints) is not None


def _table(endpoints: Endpoints, name: str, snapshot_id: int | None = None) -> Table | None:
    """The table, loaded afresh -- unless ``snapshot_id`` (a pinned read) is in the metadata
    already loaded: a snapshot never changes, so no catalog round trip is needed to read it."""
    lake = _lake(endpoints)
    if lake is None:
        return None
    try:
        if snapshot_id is not None:
            known = lake.load(name, refresh=False)
            if known.snapshot_by_id(snapshot_id) is not None:
                return known
        return lake.load(name)
    except NoSuchTableError:
        return None
    except CatalogUnavailable as exc:
        raise DatasetError(f"cannot load table {name}: {exc}") from exc


def current_snapshots(endpoints: Endpoints) -> dict[str, int]:
    """The current snapshot id of every table: pin these for a reproducible read."""
    lake = _lake(endpoints)
    if lake is None:
        raise DatasetError(f"{endpoints.s3_bucket} has no Iceberg tables to pin snapshots of")
    pins = {}
    for name in lake.names():
        snapshot = lake.load(name).current_snapshot()
        if snapshot is not None:
            pins[name] = snapshot.snapshot_id
    return pins


def snapshots_as_of(endpoints: Endpoints, when: dt.datetime) -> dict[str, int]:
    """Each table's snapshot that was current at ``when`` (time travel)."""
    lake = _lake(endpoints)
    if lake is None:
        raise DatasetError(f"{endpoints.s3_bucket} has no Iceberg tables to travel in")
    millis = int(when.timestamp() * 1000)
    pins = {}
    for name in lake.names():
        snapshot = lake.load(name).snapshot_as_of_timestamp(millis)
        if snapshot is not None:
            pins[name] = snapshot.snapshot_id
    return pins


def _planned(
    endpoints: Endpoints,
    name: str,
    snapshots: Snapshots | None,
    row_filter: str | BooleanExpression | None = None,
) -> list[str] | None:
    """``bucket/key`` paths of the table's data files (None: the table does not exist)."""
    snapshot_id = snapshots.get(name) if snapshots is not None else None
    table = _table(endpoints, name, snapshot_id)
    if table is None:
        return None
    if snapshots is not None and snapshot_id is None:
        return []  # the table had no snapshot when the read was pinned
    if snapshot_id is None and table.current_snapshot() is None:
        return []
    scan = table.scan(
        row_filter=row_filter if row_filter is not None else AlwaysTrue(),
        snapshot_id=snapshot_id,
    )
    paths = []
    for task in scan.plan_files():
        if task.delete_files:
            raise DatasetError(
                f"table {name} has row-level deletes (erasures) that this reader cannot apply "
                "yet; compact it (robolake compact) first"
            )
        key = lake_layout.key_of(task.file.file_path, endpoints.s3_bucket)
        paths.append(f"{endpoints.s3_bucket}/{key}")
    return sorted(paths)


@dataclasses.dataclass(frozen=True)
class PlannedFile:
    """A data file of a pinned snapshot, with what an episode's read prunes by."""

    path: str
    #: The ``date`` partition (days since the epoch); None if the spec has none.
    days: int | None
    #: ``episode_id`` bounds from the manifest (Iceberg truncates them, still bounds); None
    #: when the file has none.
    lower: str | None
    upper: str | None

    def may_hold(self, episode_id: str, days: int | None) -> bool:
        if days is not None and self.days is not None and days != self.days:
            return False
        if self.lower is not None and episode_id < self.lower:
            return False
        return self.upper is None or episode_id <= self.upper


#: A pinned reader's plans: (table, snapshot id) -> the snapshot's data files. A snapshot never
#: changes, so each is planned once per reader, not once per episode and stream.
Plans = dict[tuple[str, int], list[PlannedFile]]


def _snapshot_files(endpoints: Endpoints, name: str, snapshot_id: int) -> list[PlannedFile]:
    table = _table(endpoints, name, snapshot_id)
    if table is None:
        return []
    field_id = table.schema().find_field("episode_id").field_id
    dated = [f.name for f in table.metadata.spec().fields] == [DATE_COLUMN]
    files = []
    for task in table.scan(snapshot_id=snapshot_id).plan_files():
        if task.delete_files:
            raise DatasetError(
                f"table {name} has row-level deletes (erasures) that this reader cannot apply "
                "yet; compact it (robolake compact) first"
            )
        entry = task.file
        lower = (entry.lower_bounds or {}).get(field_id)
        upper = (entry.upper_bounds or {}).get(field_id)
        key = lake_layout.key_of(entry.file_path, endpoints.s3_bucket)
        files.append(
            PlannedFile(
                f"{endpoints.s3_bucket}/{key}",
                int(entry.partition[0]) if dated else None,
                lower.decode() if lower is not None else None,
                upper.decode() if upper is not None else None,
            )
        )
    return files


def _pinned_paths(
    endpoints: Endpoints,
    name: str,
    snapshot_id: int,
    episode_id: str,
    plans: Plans,
    listed: Sequence[str] = (),
) -> list[str]:
    """``bucket/key`` paths of the files of a pinned snapshot that may hold the episode.

    ``listed`` are the files the episode's index row names for this table (where the writer
    put its rows): when the snapshot still holds every one of them, they are exactly the
    episode's files. Once compaction or an erasure has replaced one, the snapshot's files are
    pruned by date and id bounds instead.
    """
    files = plans.get((name, snapshot_id))
    if files is None:
        files = plans[(name, snapshot_id)] = _snapshot_files(endpoints, name, snapshot_id)
    if listed:
        wanted = {f"{endpoints.s3_bucket}/{key}" for key in listed}
        if wanted <= {f.path for f in files}:
            return sorted(wanted)
    try:
        days: int | None = (episode_date(episode_id) - dt.date(1970, 1, 1)).days
    except ValueError:
        days = None
    return sorted(f.path for f in files if f.may_hold(episode_id, days))


@dataclasses.dataclass(frozen=True)
class DataFile:
    """One data file of a table's current snapshot, from the table's manifests."""

    table: str
    key: str
    size: int


def data_files(endpoints: Endpoints, *, index: bool = False) -> list[DataFile]:
    """The data files of every shard table (and the index table if ``index``): from the
    tables' manifests, never a listing. Empty without tables."""
    lake = _lake(endpoints)
    if lake is None:
        return []
    names = lake.shard_tables() + ([lake_layout.INDEX_TABLE] if index else [])
    found = []
    for name in names:
        table = _table(endpoints, name)
        if table is None or table.current_snapshot() is None:
            continue
        for task in table.scan().plan_files():
            key = lake_layout.key_of(task.file.file_path, endpoints.s3_bucket)
            found.append(DataFile(name, key, int(task.file.file_size_in_bytes)))
    return sorted(found, key=lambda f: f.key)


@dataclasses.dataclass(frozen=True)
class Manifest:
    """One data manifest of a shard table's current snapshot. Manifests are immutable: a
    commit adds new ones and drops replaced ones, never edits one, so what a manifest lists
    can be computed once per path and kept."""

    table: str
    path: str
    #: Reads the live data files the manifest lists (its Avro file: one GET).
    read: Callable[[], list[DataFile]] = dataclasses.field(compare=False, repr=False)


def shard_manifests(endpoints: Endpoints) -> list[Manifest]:
    """The data manifests of every shard table's current snapshot, from each snapshot's
    manifest list: what changed since a previous call is the manifests it did not return."""
    lake = _lake(endpoints)
    if lake is None:
        return []
    found = []
    for name in lake.shard_tables():
        table = _table(endpoints, name)
        snapshot = table.current_snapshot() if table is not None else None
        if table is None or snapshot is None:
            continue
        for manifest in snapshot.manifests(table.io):
            if manifest.content != ManifestContent.DATA:
                continue
            read = functools.partial(_manifest_files, endpoints.s3_bucket, name, table, manifest)
            found.append(Manifest(name, manifest.manifest_path, read))
    return found


def _manifest_files(bucket: str, name: str, table: Table, manifest: ManifestFile) -> list[DataFile]:
    files = []
    for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
        if entry.data_file.content != DataFileContent.DATA:
            continue
        key = lake_layout.key_of(entry.data_file.file_path, bucket)
        files.append(DataFile(name, key, int(entry.data_file.file_size_in_bytes)))
    return files


def stored_totals(endpoints: Endpoints, *, shards_only: bool = False) -> tuple[int, int]:
    """(bytes, data files) of every table (or of the shard tables), from the current snapshots'
    summaries: O(1) in the number of files. (0, 0) without tables."""
    lake = _lake(endpoints)
    if lake is None:
        return 0, 0
    size = files = 0
    for name in lake.shard_tables() if shards_only else lake.names():
        table = _table(endpoints, name)
        snapshot = table.current_snapshot() if table is not None else None
        if snapshot is None or snapshot.summary is None:
            continue
        size += int(snapshot.summary.get("total-files-size") or 0)
        files += int(snapshot.summary.get("total-data-files") or 0)
    return size, files


def _files_dataset(endpoints: Endpoints, paths: list[str], schema: pa.Schema | None) -> ds.Dataset:
    if not paths:
        if schema is None:
            raise DatasetError("no data files to read")
        return ds.dataset(schema.empty_table())
    return ds.dataset(paths, filesystem=s3_filesystem(endpoints), format="parquet", schema=schema)


def stream_types(endpoints: Endpoints) -> list[str]:
    """The stream types (``joint_state.v1`` …) that have shards."""
    lake = _lake(endpoints)
    if lake is not None:
        found = []
        for name in lake.shard_tables():
            key = lake_layout.stream_type_of(name)
            if key is not None and _planned(endpoints, name, None):
                found.append(key)
        return sorted(found)
    fs = s3_filesystem(endpoints)
    selector = pafs.FileSelector(f"{endpoints.s3_bucket}/{SHARDS_PREFIX}", allow_not_found=True)
    return sorted(
        info.base_name for info in fs.get_file_info(selector) if info.type.name == "Directory"
    )


def shards(
    endpoints: Endpoints, stream_type: str, *, snapshots: Snapshots | None = None
) -> ds.Dataset:
    """All shards of one stream type, with the ``date`` partition as a column."""
    if _lake(endpoints) is not None:
        paths = _planned(endpoints, lake_layout.shard_table(stream_type), snapshots) or []
        return _files_dataset(endpoints, paths, None if paths else _shard_schema(stream_type))
    return ds.dataset(
        f"{endpoints.s3_bucket}/{SHARDS_PREFIX}/{stream_type}",
        filesystem=s3_filesystem(endpoints),
        format="parquet",
        partitioning="hive",
    )


def _shard_schema(stream_type: str) -> pa.Schema:
    name, _, version = stream_type.rpartition(".v")
    return table_arrow_schema(shard_schema(default_registry().get(name, int(version))))


def episodes_index(
    endpoints: Endpoints,
    *,
    snapshots: Snapshots | None = None,
    row_filter: BooleanExpression | None = None,
) -> ds.Dataset:
    """The episodes index (rows may repeat per episode; the newest ``indexed_at`` wins).

    From the tables, ``row_filter`` prunes the files planned (partitions, column statistics);
    rows are not filtered, and the listing layout, with no statistics to plan from, ignores it.

    Read with the contract's schema, not one inferred from a file: pyarrow would take the first
    file's, and index files written before a column was added (``organisation``) lack it, so a
    bucket holding both would lose the column or fail depending on which file sorts first. With
    the contract's schema a missing column reads as nulls.
    """
    if _lake(endpoints) is not None:
        paths = _planned(endpoints, lake_layout.INDEX_TABLE, snapshots, row_filter) or []
        return _files_dataset(endpoints, paths, index_description().schema)
    return open_index(f"{endpoints.s3_bucket}/{INDEX_PREFIX}", s3_filesystem(endpoints))


def open_index(path: str, filesystem: pafs.FileSystem) -> ds.Dataset:
    """The index files under ``path`` as one dataset of the contract's schema (see above)."""
    return ds.dataset(
        path,
        filesystem=filesystem,
        format="parquet",
        partitioning="hive",
        schema=index_description().schema,
    )


def has_index(endpoints: Endpoints, *, snapshots: Snapshots | None = None) -> bool:
    """Whether there is any index file (pyarrow cannot open a dataset of nothing)."""
    if _lake(endpoints) is not None:
        return bool(_planned(endpoints, lake_layout.INDEX_TABLE, snapshots))
    fs = s3_filesystem(endpoints)
    selector = pafs.FileSelector(
        f"{endpoints.s3_bucket}/{INDEX_PREFIX}", allow_not_found=True, recursive=True
    )
    return any(info.type == pafs.FileType.File for info in fs.get_file_info(selector))


def read_shard_rows(
    endpoints: Endpoints,
    keys: Sequence[str],
    *,
    episode_id: str,
    stream: str | None = None,
    columns: Sequence[str] | None = None,
    filesystem: pafs.FileSystem | None = None,
    stream_type: str | None = None,
    snapshots: Snapshots | None = None,
    plans: Plans | None = None,
) -> list[pa.Table]:
    """The rows of one episode (optionally one stream) in the shard files ``keys``, per file.

    Only the named files are opened, and inside them only the row groups whose ``episode_id``
    statistics can hold the episode (shards are sorted by episode), so reading one episode
    fetches that episode's bytes and the files' footers, not the dataset. One table per file,
    in key order, so callers can drop a chunk stored twice by keeping its first file.

    From the tables (``stream_type`` given), ``keys`` are ignored -- compaction rewrites files,
    so the index's ``shard_files`` only say where rows were first written: the files are planned
    from the table, pruned to the episode's date partition and to files whose ``episode_id``
    bounds hold it. A pinned read given ``plans`` (the reader's) plans each table's snapshot
    once and prunes from that: the snapshot cannot change, and planning per stream read cost
    a catalog round trip and the manifests every time.
    """
    if stream_type is not None and _lake(endpoints) is not None:
        table = lake_layout.shard_table(stream_type)
        pinned = snapshots.get(table) if snapshots is not None else None
        if plans is not None and pinned is not None:
            paths = _pinned_paths(endpoints, table, pinned, episode_id, plans, keys)
        else:
            # Episode ids are validated UUIDs (no quotes), so the filter text is safe to build.
            wanted = f"episode_id == '{episode_id}'"
            with contextlib.suppress(ValueError):
                wanted += f" and date == '{episode_date(episode_id).isoformat()}'"
            paths = _planned(endpoints, table, snapshots, wanted) or []
        keys = [path.split("/", 1)[1] for path in paths]
    fs = filesystem if filesystem is not None else s3_filesystem(endpoints)
    condition = pc.field("episode_id") == episode_id
    if stream is not None:
        condition = condition & (pc.field("stream") == stream)
    tables = []
    for key in sorted(keys):
        fragment = ds.dataset(f"{endpoints.s3_bucket}/{key}", filesystem=fs, format="parquet")
        table = fragment.to_table(
            columns=list(columns) if columns is not None else None, filter=condition
        )
        log.debug("read %d rows of episode %s from %s", table.num_rows, episode_id, key)
        tables.append(table)
    return tables
