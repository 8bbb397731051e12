"""Commit one partition's flush to a table, atomically with its offsets, or refuse.

The rule is a compare-and-set on the partition's recorded offset: a writer commits only if the
table still records for its partition exactly the offset the writer last read or committed
there (its *expected* offset). Iceberg's optimistic concurrency makes the check and the commit
one step: the commit asserts the table's ``main`` is still the snapshot the check read, so any
commit in between makes it fail and the check runs again on the refreshed table.

pyiceberg 0.12 retries a conflicting append by itself, re-applying the snapshot with the summary
computed against the old parent -- it would commit offsets nobody re-checked, and rewind other
partitions' entries in the map. These commits therefore run with the table's own retries off
(for this commit only; the table property is untouched) and retry here, re-validating every
attempt. Commits of other partitions to the same table conflict but are retried; a commit that
moved *this* partition's offset means another writer owns it: :class:`~robolake.lake.errors.Fenced`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.exceptions import CommitFailedException, CommitStateUnknownException
from pyiceberg.io.pyarrow import (
    compute_statistics_plan,
    data_file_statistics_from_parquet_metadata,
    parquet_path_to_id_mapping,
)
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.table import Table, TableProperties, Transaction
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.update import TableUpdate, update_table_metadata
from pyiceberg.types import BinaryType

from robolake.lake.catalog import UNAVAILABLE, LakeTables, with_io
from robolake.lake.errors import CatalogUnavailable, Fenced
from robolake.lake.offsets import carried, carried_all, recorded

log = logging.getLogger(__name__)

MAX_ATTEMPTS: Final = 30


def data_file(metadata: TableMetadata, path: str, data: bytes) -> DataFile:
    """The manifest entry of a Parquet file the writer encoded, from its footer in memory.

    pyiceberg's ``add_files`` would read the footer back from S3 (a GET per file) and scan the
    table for duplicates (every manifest, per commit); the writer has the bytes and its offsets
    rule out duplicates.
    """
    return data_file_from_footer(metadata, path, pq.read_metadata(pa.BufferReader(data)), len(data))


def data_file_from_footer(
    metadata: TableMetadata, path: str, footer: pq.FileMetaData, size: int
) -> DataFile:
    """The manifest entry of a Parquet file from its footer and size (no bytes needed).

    Encoded media (binary columns, ``schemas/shards.md``) and list elements (pyarrow's
    ``write_statistics`` names top-level columns) have no statistics in the footer, so the plan
    says so for every column without them, instead of pyiceberg warning about each in every
    file (a hundred log lines per flush).
    """
    schema = metadata.schema()
    mapping = parquet_path_to_id_mapping(schema)
    properties = {
        **metadata.properties,
        **{
            f"write.metadata.metrics.column.{f.name}": "none"
            for f in schema.fields
            if isinstance(f.field_type, BinaryType)
        },
    }
    if footer.num_row_groups:
        first = footer.row_group(0)
        for i in range(footer.num_columns):
            column = first.column(i)
            if column.is_stats_set:
                continue
            field_id = mapping.get(column.path_in_schema)
            name = schema.find_column_name(field_id) if field_id is not None else None
            if name is not None:
                properties[f"write.metadata.metrics.column.{name}"] = "none"
    stats = data_file_statistics_from_parquet_metadata(
        parquet_metadata=footer,
        stats_columns=compute_statistics_plan(schema, properties),
        parquet_column_mapping=mapping,
    )
    return DataFile.from_args(
        content=DataFileContent.DATA,
        file_path=path,
        file_format=FileFormat.PARQUET,
        partition=stats.partition(metadata.spec(), schema),
        file_size_in_bytes=size,
        sort_order_id=None,
        spec_id=metadata.default_spec_id,
        equality_ids=None,
        key_metadata=None,
        **stats.to_serialized_dict(),
    )


@dataclass(frozen=True)
class Committed:
    """A landed commit (or one found already landed)."""

    table: Table
    snapshot_id: int | None
    attempts: int
    already: bool = False
    #: Attempts that conflicted with another commit and were re-checked.
    conflicts: int = 0


@dataclass(frozen=True)
class PartitionCommit:
    """One partition's flush for one table: its files and its offset's move."""

    topic: str
    partition: int
    #: The offset the table must still record for the partition (None: nothing yet).
    expected: int | None
    next_offset: int
    files: Sequence[DataFile]
    #: The writer checkpoint holding the state at ``next_offset`` (the index table only).
    checkpoint: str | None = None


@dataclass(frozen=True)
class BatchCommitted:
    """How a batch of partition commits to one table went, request by request."""

    table: Table
    #: The snapshot that landed (None if no request needed one).
    snapshot_id: int | None
    attempts: int
    conflicts: int
    #: Per request, in order: whether it had landed before (a retry after a lost response).
    already: tuple[bool, ...]
    #: Per request, in order: why it was refused (another writer owns the partition), or None.
    refused: tuple[Fenced | None, ...]


class StagedTransaction(Transaction):
    """pyiceberg's transaction with its staged metadata built once per change.

    pyiceberg 0.12 rebuilds and deep-copies the whole table metadata on every read of
    ``table_metadata``, which one fast append reads about ten times: 71 % of a commit's CPU in a
    py-spy profile of a table with 40 snapshots, and it grows with the snapshot count. The
    staged metadata changes only when ``_updates`` or the table's metadata do (both replaced,
    never changed in place), so one copy per pair gives the same answer.
    """

    _staged: tuple[TableMetadata, tuple[TableUpdate, ...], TableMetadata] | None = None

    @property
    def table_metadata(self) -> TableMetadata:
        base, updates = self._table.metadata, self._updates
        staged = self._staged
        if staged is None or staged[0] is not base or staged[1] is not updates:
            staged = (base, updates, update_table_metadata(base, updates))
            self._staged = staged
        return staged[2]


def transaction_of(table: Table) -> Transaction:
    """A transaction on ``table`` with pyiceberg's own retries off: the caller re-checks and
    retries conflicts itself."""
    return StagedTransaction(without_retries(table))


def without_retries(table: Table) -> Table:
    """The same table, for one transaction whose conflicts the caller handles itself."""
    properties = {**table.metadata.properties, TableProperties.COMMIT_NUM_RETRIES: "0"}
    metadata = table.metadata.model_copy(update={"properties": properties})
    return Table(table.name(), metadata, table.metadata_location, table.io, table.catalog)


def commit_partition(
    table: Table,
    files: Sequence[DataFile],
    *,
    topic: str,
    partition: int,
    expected: int | None,
    next_offset: int,
    checkpoint: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Committed:
    """Append ``files`` with ``partition``'s offset moved from ``expected`` to ``next_offset``.

    Already landed (the table records ``next_offset`` and, if given, ``checkpoint``: a retry
    after a lost response) -> returns ``already``. Anything else recorded -> :class:`Fenced`.
    """
    request = PartitionCommit(topic, partition, expected, next_offset, files, checkpoint)
    done = commit_partitions(table, [request], sleep=sleep)
    refused = done.refused[0]
    if refused is not None:
        raise refused
    already = done.already[0]
    return Committed(done.table, done.snapshot_id, done.attempts, already, done.conflicts)


def commit_partitions(
    table: Table,
    requests: Sequence[PartitionCommit],
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> BatchCommitted:
    """Commit several partitions' flushes to one table in one snapshot, each under its own
    compare-and-set; a refused request does not hold back the others.

    Why batches: every snapshot costs the same (metadata, a manifest, a manifest list, a POST)
    however many files it adds, and the partitions of one writer committing one by one to the
    same table conflict with each other. At most one request per (topic, partition).
    """
    keys = [(r.topic, r.partition) for r in requests]
    if len(set(keys)) != len(keys):
        raise ValueError("a batch holds at most one commit per partition")
    conflicts = 0
    fresh = False  # whether ``table`` was loaded by this call (a cached view may be stale)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        found = {topic: recorded(table.metadata, topic) for topic in {r.topic for r in requests}}
        already = [False] * len(requests)
        refused: list[Fenced | None] = [None] * len(requests)
        stale = False
        for i, request in enumerate(requests):
            mine = found[request.topic]
            current = mine.offsets.get(request.partition)
            if request.checkpoint is not None:
                landed_before = mine.checkpoints.get(request.partition) == request.checkpoint
            else:
                landed_before = current == request.next_offset and current != request.expected
            if landed_before:
                already[i] = True
            elif current != request.expected:
                stale = stale or not fresh
                refused[i] = Fenced(
                    f"{table.name()[-1]}: {request.topic}[{request.partition}] records offset "
                    f"{current}, this writer expected {request.expected}; another writer "
                    "committed it"
                )
        if stale:
            table, fresh = _refresh(table), True
            continue
        todo = [r for i, r in enumerate(requests) if not already[i] and refused[i] is None]
        if not todo:
            return BatchCommitted(table, None, attempt, conflicts, tuple(already), tuple(refused))
        properties: dict[str, str] = {}
        for topic, mine in found.items():
            moved = [r for r in todo if r.topic == topic]
            if not moved:
                continue
            named = {r.partition: r.checkpoint for r in moved if r.checkpoint is not None}
            properties.update(
                carried(
                    mine,
                    topic,
                    {r.partition: r.next_offset for r in moved},
                    named or None,
                )
            )
        transaction = transaction_of(table)
        with transaction.update_snapshot(snapshot_properties=properties).merge_append() as append:
            for request in todo:
                for file in request.files:
                    append.append_data_file(file)
        try:
            landed = transaction.commit_transaction()
        except CommitFailedException:
            conflicts += 1
            log.debug("%s: commit conflict (attempt %d); re-checking", table.name(), attempt)
            # Short and jittered: the conflict is almost always another writer's commit,
            # which has landed by now; the re-check below sees it.
            sleep(min(0.01 * 2 ** min(attempt, 8), 2.0) * (0.5 + random.random()))
            table, fresh = _refresh(table), True
            continue
        except CommitStateUnknownException as exc:
            raise CatalogUnavailable(
                f"commit to {table.name()} has an unknown outcome: {exc}"
            ) from exc
        except UNAVAILABLE as exc:
            raise CatalogUnavailable(f"commit to {table.name()} failed: {exc}") from exc
        snapshot = landed.metadata.current_snapshot()
        return BatchCommitted(
            landed,
            snapshot.snapshot_id if snapshot else None,
            attempt,
            conflicts,
            tuple(already),
            tuple(refused),
        )
    raise CatalogUnavailable(
        f"commit to {table.name()} conflicted {MAX_ATTEMPTS} times in a row; retried later"
    )


def _refresh(table: Table) -> Table:
    """The table's newest metadata, as a new object (cached views are shared by threads),
    keeping ``table``'s file IO (:func:`~robolake.lake.catalog.with_io`)."""
    try:
        loaded = table.catalog.load_table(table.name())
    except UNAVAILABLE as exc:
        raise CatalogUnavailable(f"cannot refresh {table.name()}: {exc}") from exc
    return with_io(loaded, table.io)


def append_files(
    tables: LakeTables,
    name: str,
    written: Sequence[tuple[str, pq.FileMetaData, int]],
    properties: Mapping[str, str] | None = None,
) -> None:
    """One append of ``written`` (key, footer, size) to table ``name`` that is not a writer's
    flush (migration, audit rows): the recorded offsets carried forward, retried on conflict
    with the summary recomputed (pyiceberg's own retry would re-apply a stale one and rewind
    the writers' offsets)."""
    for attempt in range(MAX_ATTEMPTS):
        table = tables.load(name)
        files = [
            data_file_from_footer(table.metadata, f"s3://{tables.bucket}/{key}", footer, size)
            for key, footer, size in written
        ]
        summary = {**carried_all(table.metadata), **(properties or {})}
        transaction = transaction_of(table)
        with transaction.update_snapshot(snapshot_properties=summary).merge_append() as append:
            for file in files:
                append.append_data_file(file)
        try:
            transaction.commit_transaction()
            return
        except CommitFailedException:
            log.info("%s: append conflicted (attempt %d); retrying", name, attempt + 1)
            time.sleep(min(0.1 * 2**attempt, 2.0))
        except UNAVAILABLE as exc:
            raise CatalogUnavailable(f"append to {name} failed: {exc}") from exc
    raise CatalogUnavailable(f"append to {name} kept conflicting; try again")
