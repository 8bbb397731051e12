"""What a partition's committed position is, and how a flush is committed: the seam between the
run loop and the system of record.

- :class:`BucketLedger`: Kafka's committed offset is the truth; flush checkpoints in the bucket
  carry the state (:mod:`robolake.writer.checkpoints`). The original design, kept for
  deployments without a catalog and as the benchmark's baseline.
- :class:`TableLedger`: the Iceberg tables are the truth. Each flush is committed to every table
  it wrote (the stream types at once, then the episodes index, always), each commit carrying
  the partition's next offset in its snapshot summary under compare-and-set
  (:mod:`robolake.lake.commits`). The index table's commit is the flush's commit point: it also
  names the checkpoint holding the state, and its recorded offset is where the partition
  resumes. Kafka's committed offset is kept up to date as a hint for tools (lag).

Why per-table offsets give exactly once across the tables of a flush (no multi-table
transaction is needed, which Glue and most REST catalogs lack): for every table *T* and
partition *p*, *T* holds exactly the rows of *p*'s chunks for *T* below the offset *T* records,
each once. A commit moves that offset from the value the writer read to the flush's end, and the
flush holds exactly *T*'s chunks in between, so the statement stays true. A crash after some
tables committed and before the index did leaves those tables ahead of the index; the next owner
resumes at the index's offset with the index's state and, per table, skips the chunks below that
table's offset (they update the state, as they did in the lost flush, but are not written
again). A zombie's commit, or a second owner's, finds an offset it did not expect and is refused
(:class:`~robolake.writer.errors.PartitionFenced`): its files stay orphans.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from robolake.episode.shards import INDEX_PREFIX, SHARDS_PREFIX
from robolake.episode.stream_types import StreamType
from robolake.lake import layout as lake_layout
from robolake.lake.catalog import LakeTables
from robolake.lake.commits import commit_partition, data_file
from robolake.lake.errors import CatalogUnavailable, Fenced
from robolake.lake.offsets import recorded
from robolake.writer.checkpoints import Checkpoint, Recovery, recover
from robolake.writer.errors import CheckpointError, PartitionFenced, StorageUnavailable
from robolake.writer.index import EpisodeState
from robolake.writer.layout import BUCKET_LAYOUT, FlushLayout, TableLayout
from robolake.writer.partition import PartitionWriter, PreparedFlush
from robolake.writer.storage import ObjectStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CommitStats:
    """How a flush's commit went."""

    seconds: float = 0.0
    #: Table commits that conflicted and were retried.
    conflicts: int = 0
    tables: int = 0


@dataclass(frozen=True)
class Resume:
    """Where a newly assigned partition resumes."""

    #: First offset to consume (None: the beginning of the partition).
    offset: int | None
    recovery: Recovery
    #: Per stream type, the offset below which its table already holds the partition's rows.
    floors: dict[str, int] = field(default_factory=dict)
    #: Per table, the offset it records for the partition (what its next commit expects).
    table_offsets: dict[str, int | None] = field(default_factory=dict)


class Ledger(Protocol):
    """The run loop's view of the system of record. Methods block: call them in a thread."""

    layout: FlushLayout
    #: Whether Kafka's committed offset is the truth (else a hint, committed after the tables).
    kafka_is_truth: bool

    def resume(self, topic: str, partition: int, committed: int | None) -> Resume:
        """The position and state to resume a partition from, ``committed`` being Kafka's."""
        ...

    def ready(self, stream_types: Collection[StreamType]) -> None:
        """Make sure a flush of these stream types can be laid out (tables exist)."""
        ...

    def commit(self, writer: PartitionWriter, flush: PreparedFlush) -> CommitStats:
        """Record a stored flush as committed; PartitionFenced if another writer owns it."""
        ...

    def stored_bytes(self) -> int:
        """Bytes of the dataset (shards and index), for the stored-bytes gauge."""
        ...


class BucketLedger:
    """Kafka's committed offset plus bucket checkpoints (``schemas/shards.md``)."""

    kafka_is_truth = True

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.layout: FlushLayout = BUCKET_LAYOUT

    def resume(self, topic: str, partition: int, committed: int | None) -> Resume:
        return Resume(committed, recover(self.store, topic, partition, committed))

    def ready(self, stream_types: Collection[StreamType]) -> None:
        return None

    def commit(self, writer: PartitionWriter, flush: PreparedFlush) -> CommitStats:
        return CommitStats()  # the Kafka commit that follows is the commit

    def stored_bytes(self) -> int:
        """Listing the bucket: the layout has no other record of what it holds."""
        prefixes = (f"{SHARDS_PREFIX}/", f"{INDEX_PREFIX}/")
        return sum(o.size for prefix in prefixes for o in self.store.list(prefix))


class TableLedger:
    """The Iceberg tables as the system of record."""

    kafka_is_truth = False

    def __init__(
        self, store: ObjectStore, tables: LakeTables, token: str, *, commit_pause_s: float = 0.0
    ) -> None:
        """``commit_pause_s``: fault injection, hold still after each table commit of a flush
        (``ROBOLAKE_WRITER_COMMIT_PAUSE``) so a test can kill the writer between two."""
        self.store = store
        self.tables = tables
        self.token = token
        self.commit_pause_s = commit_pause_s
        self.layout: FlushLayout = TableLayout(tables, token)
        #: Commits of a flush's stream type tables run at once (one round trip, not one per
        #: table): 7 tables took 1.4-1.9 s one after another (measured, make bench drain).
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="table-commit")

    def start(self) -> None:
        """Namespace and index table exist (blocking; CatalogUnavailable if unreachable)."""
        self.tables.ensure_namespace()
        self.tables.ensure_index()

    def resume(self, topic: str, partition: int, committed: int | None) -> Resume:
        try:
            return self._resume(topic, partition, committed)
        except CatalogUnavailable as exc:
            raise StorageUnavailable(str(exc), retry_after=1.0) from exc

    def _resume(self, topic: str, partition: int, committed: int | None) -> Resume:
        index = self.tables.load(lake_layout.INDEX_TABLE)
        found = recorded(index.metadata, topic)
        position = found.offsets.get(partition)
        if position is None:
            # Nothing of this partition committed to the tables: a new deployment, or one
            # moving from the bucket layout. Resume as that layout would.
            recovery = recover(self.store, topic, partition, committed)
            start = committed
        else:
            key = found.checkpoints.get(partition)
            if key is None:
                raise CheckpointError(
                    f"{topic}[{partition}]: table {index.name()} records offset {position} but "
                    "names no checkpoint; was it committed by something else than a writer?"
                )
            data = self.store.get(key)
            if data is None:
                raise CheckpointError(
                    f"{topic}[{partition}]: checkpoint {key}, named by the index table at offset "
                    f"{position}, is missing from the bucket; restore it from the bucket's "
                    "versioning (the writer never deletes a checkpoint the tables name)"
                )
            checkpoint = Checkpoint.from_bytes(data, where=key)
            episodes = {
                state.episode_id: state
                for state in (EpisodeState.from_json(doc) for doc in checkpoint.episodes)
            }
            recovery = Recovery(episodes, key, (), (), flush=checkpoint.flush)
            start = position
            if committed != position:
                log.info(
                    "%s[%d]: the tables record offset %d, Kafka's committed offset is %s; "
                    "resuming from the tables",
                    topic,
                    partition,
                    position,
                    committed,
                )
        offsets: dict[str, int | None] = {lake_layout.INDEX_TABLE: position}
        floors: dict[str, int] = {}
        for name in self.tables.shard_tables():
            table_offset = recorded(self.tables.load(name).metadata, topic).offsets.get(partition)
            offsets[name] = table_offset
            stream_type = lake_layout.stream_type_of(name)
            if table_offset is not None and stream_type is not None and table_offset > (start or 0):
                floors[stream_type] = table_offset
        if floors:
            log.warning(
                "%s[%d]: tables %s are ahead of the index (a flush committed to them but not to "
                "the index before a crash); their chunks below those offsets are not written again",
                topic,
                partition,
                floors,
            )
        return Resume(start, recovery, floors, offsets)

    def _commit_table(
        self,
        writer: PartitionWriter,
        name: str,
        keys: list[str],
        data: dict[str, bytes],
        checkpoint: Checkpoint,
    ) -> int:
        """Commit one table's files of a flush; the number of conflicts retried."""
        # The newest metadata (one GET): other partitions' writers commit to the same tables,
        # so a cached view mostly fails its first attempt -- and a failed attempt costs a
        # manifest, a manifest list and a refused POST.
        table = self.tables.load(name, refresh=True)
        files = [
            data_file(table.metadata, f"s3://{self.tables.bucket}/{key}", data[key]) for key in keys
        ]
        is_index = name == lake_layout.INDEX_TABLE
        done = commit_partition(
            table,
            files,
            topic=writer.topic,
            partition=writer.partition,
            expected=writer.table_offsets.get(name),
            next_offset=checkpoint.next,
            checkpoint=checkpoint.key if is_index else None,
        )
        self.tables.remember(name, done.table)
        writer.table_offsets[name] = checkpoint.next
        if self.commit_pause_s and not is_index:
            log.info(
                "%s[%d]: committed %s up to offset %d, pausing %.1f s (fault injection)",
                writer.topic,
                writer.partition,
                name,
                checkpoint.next,
                self.commit_pause_s,
            )
            time.sleep(self.commit_pause_s)
        return done.conflicts

    def stored_bytes(self) -> int:
        """From the current snapshots' summaries (``total-files-size``): no listing."""
        try:
            total = 0
            for name in self.tables.names():
                snapshot = self.tables.load(name).current_snapshot()
                if snapshot is not None and snapshot.summary is not None:
                    total += int(snapshot.summary.get("total-files-size") or 0)
            return total
        except CatalogUnavailable as exc:
            raise StorageUnavailable(str(exc)) from exc

    def ready(self, stream_types: Collection[StreamType]) -> None:
        try:
            for stream_type in stream_types:
                self.tables.ensure_stream_type(stream_type)
        except CatalogUnavailable as exc:
            raise StorageUnavailable(str(exc), retry_after=1.0) from exc

    def commit(self, writer: PartitionWriter, flush: PreparedFlush) -> CommitStats:
        began = time.perf_counter()
        conflicts = 0
        checkpoint = flush.checkpoint
        by_table: dict[str, list[str]] = {}
        data = {f.key: f.data for f in flush.files}
        for file in flush.files:
            name = (
                lake_layout.INDEX_TABLE
                if file.kind == "index"
                else lake_layout.shard_table(file.kind)
            )
            by_table.setdefault(name, []).append(file.key)
        shard_tables = sorted(n for n in by_table if n != lake_layout.INDEX_TABLE)

        def one(name: str) -> int:
            return self._commit_table(writer, name, by_table.get(name, []), data, checkpoint)

        try:
            if self.commit_pause_s or len(shard_tables) < 2:
                for name in shard_tables:
                    conflicts += one(name)
            else:
                # The stream type tables of a flush are independent (each records its own
                # offset), so they commit at once; the index, the commit point, after them all.
                outcomes = list(self._pool.map(_outcome(one), shard_tables))
                failures = [o for o in outcomes if isinstance(o, BaseException)]
                fenced = [f for f in failures if isinstance(f, Fenced)]
                if fenced or failures:
                    raise (fenced or failures)[0]
                conflicts += sum(o for o in outcomes if isinstance(o, int))
            conflicts += one(lake_layout.INDEX_TABLE)
        except Fenced as exc:
            raise PartitionFenced(str(exc)) from exc
        except CatalogUnavailable as exc:
            raise StorageUnavailable(str(exc), retry_after=1.0) from exc
        return CommitStats(time.perf_counter() - began, conflicts, len(shard_tables) + 1)


def _outcome(call: Callable[[str], int]) -> Callable[[str], int | BaseException]:
    """``call`` returning its exception instead of raising, so every commit of a batch ends
    before one failure is raised (a half-waited batch would race the retry)."""

    def run(name: str) -> int | BaseException:
        try:
            return call(name)
        except (Fenced, CatalogUnavailable) as exc:
            return exc

    return run
