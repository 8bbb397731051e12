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
import threading
import time
import weakref
from collections.abc import Callable, Collection
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Final, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from robolake.episode.shards import INDEX_PREFIX, SHARDS_PREFIX
from robolake.episode.stream_types import StreamType
from robolake.lake import layout as lake_layout
from robolake.lake.catalog import LakeTables
from robolake.lake.errors import CatalogUnavailable, Fenced
from robolake.lake.offsets import recorded
from robolake.writer.checkpoints import Checkpoint, Recovery, recover
from robolake.writer.committer import Committer, Landed, StagedFile, TableCommitter, wait_all
from robolake.writer.errors import CheckpointError, PartitionFenced, StorageUnavailable
from robolake.writer.index import EpisodeState
from robolake.writer.layout import BUCKET_LAYOUT, FlushLayout, TableLayout
from robolake.writer.partition import PartitionWriter, PreparedFlush
from robolake.writer.storage import ObjectStore

log = logging.getLogger(__name__)

#: A partition commits once this many flushes are staged, whatever the interval.
MAX_STAGED_FLUSHES: Final = 64


@dataclass(frozen=True)
class CommitStats:
    """How a flush's commit went, and what the run loop does after it."""

    seconds: float = 0.0
    #: Table commits that conflicted and were retried.
    conflicts: int = 0
    tables: int = 0
    #: Of its table commits, those that shared a snapshot with other partitions' flushes.
    shared: int = 0
    #: Flushes this commit made durable (more than one when earlier ones were staged).
    flushes: int = 1
    #: Offset to commit to Kafka now (None: nothing, e.g. the flush is only staged).
    kafka_offset: int | None = None
    #: Checkpoints no longer needed by anything, to delete.
    released: tuple[str, ...] = ()


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
        """Record a stored flush as committed, or stage it to commit with the next ones;
        PartitionFenced if another writer owns the partition."""
        ...

    def settle(self, writer: PartitionWriter) -> CommitStats:
        """Commit the partition's staged flushes now (it is handed over or shut down);
        ``flushes`` is 0 if none were staged."""
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
        # The Kafka commit that follows is the commit.
        return CommitStats(kafka_offset=flush.commit_to, released=_superseded(writer, flush))

    def settle(self, writer: PartitionWriter) -> CommitStats:
        return CommitStats(flushes=0)  # every flush is committed when it is stored

    def stored_bytes(self) -> int:
        """Listing the bucket: the layout has no other record of what it holds."""
        prefixes = (f"{SHARDS_PREFIX}/", f"{INDEX_PREFIX}/")
        return sum(o.size for prefix in prefixes for o in self.store.list(prefix))


def _superseded(writer: PartitionWriter, flush: PreparedFlush) -> tuple[str, ...]:
    """The checkpoint the flush replaces, once the flush is committed."""
    previous = writer.last_checkpoint
    return (previous,) if previous is not None and previous != flush.checkpoint.key else ()


@dataclass
class _Staged:
    """A partition's flushes that are stored but not committed to the tables yet."""

    #: When the first of them was staged (monotonic).
    since: float
    #: Per table, the files (key, footer, size): the bytes are let go once stored.
    files: dict[str, list[StagedFile]] = field(default_factory=dict)
    #: Checkpoint keys of the staged flushes, in order.
    checkpoints: list[str] = field(default_factory=list)
    #: Checkpoints the staged flushes replace (garbage once they are committed).
    superseded: list[str] = field(default_factory=list)
    #: Whether any staged flush moved the partition's offset (else index rows only).
    moved: bool = False
    #: The last staged flush's checkpoint: its offset and key are what the commit records.
    last: Checkpoint | None = None
    #: Tables these flushes are committed to already (a commit that failed part-way and is
    #: retried must not submit them again: their expected offset is now the new one, so the
    #: compare-and-set would pass and append the same files twice).
    landed: set[str] = field(default_factory=set)


class TableLedger:
    """The Iceberg tables as the system of record.

    A flush is committed at once when its partition has gone quiet (nothing buffered after it,
    nothing more in Kafka), when a multiple of ``commit_interval_s`` has passed since the
    partition's oldest staged flush, or when the interval is 0; otherwise it is *staged*: its
    files are stored and its checkpoint written, and it is committed together with the
    partition's next flushes, in one snapshot per table. Why: a
    snapshot costs about the same whatever it adds (~30 ms of the writer's CPU, most of it
    pyiceberg's Python, measured), and at full speed a writer flushes every few seconds per
    partition -- the Iceberg sink commits on an interval for the same reason. Nothing changes
    for exactly once: the tables still record, per partition, one offset below which they hold
    every chunk once; a staged flush that a crash loses was never committed, so its files are
    orphans and its records are replayed from the offset the tables record.
    """

    kafka_is_truth = False

    def __init__(
        self,
        store: ObjectStore,
        tables: LakeTables,
        token: str,
        *,
        commit_interval_s: float = 0.0,
        commit_pause_s: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
        committer: Callable[[LakeTables, str], Committer] = TableCommitter,
    ) -> None:
        """``commit_pause_s``: fault injection, hold still after each table commit of a flush
        (``ROBOLAKE_WRITER_COMMIT_PAUSE``) so a test can kill the writer between two; it
        commits every flush at once. ``committer`` makes a table's committer (tests pass a
        fake: the staging rules are logic)."""
        self.store = store
        self.tables = tables
        self.token = token
        self.commit_interval_s = commit_interval_s
        self.commit_pause_s = commit_pause_s
        self.monotonic = monotonic
        self._make_committer = committer
        #: Per partition writer (dropped with it when the partition is lost or revoked).
        self._staged: weakref.WeakKeyDictionary[PartitionWriter, _Staged] = (
            weakref.WeakKeyDictionary()
        )
        #: Per partition writer, the checkpoints of the flushes its last commit made durable
        #: and what that commit returned: a flush handed in again (its follow-up failed, e.g.
        #: the Kafka hint in a rebalance, so the loop still holds it pending) is not appended
        #: a second time -- its tables now expect the new offset, so the compare-and-set
        #: would pass.
        self._landed: weakref.WeakKeyDictionary[
            PartitionWriter, tuple[frozenset[str], CommitStats]
        ] = weakref.WeakKeyDictionary()
        self.layout: FlushLayout = TableLayout(tables, token)
        #: One committer per table, shared by the partitions (:mod:`robolake.writer.committer`);
        #: a flush's stream type tables commit at once, through theirs: 7 tables took 1.4-1.9 s
        #: one after another (measured, make bench drain).
        self._committers: dict[str, Committer] = {}
        self._lock = threading.Lock()

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

    def _committer(self, name: str) -> Committer:
        with self._lock:
            committer = self._committers.get(name)
            if committer is None:
                committer = self._committers[name] = self._make_committer(self.tables, name)
            return committer

    def _submit(
        self,
        writer: PartitionWriter,
        name: str,
        written: list[StagedFile],
        checkpoint: Checkpoint,
    ) -> Future[Landed]:
        """Queue one table's files of the partition's staged flushes with its committer."""
        return self._committer(name).submit(
            topic=writer.topic,
            partition=writer.partition,
            expected=writer.table_offsets.get(name),
            next_offset=checkpoint.next,
            checkpoint=checkpoint.key if name == lake_layout.INDEX_TABLE else None,
            files=written,
        )

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

    def _stage(self, writer: PartitionWriter, flush: PreparedFlush) -> _Staged:
        """Add the flush to the partition's staged ones (once: a failed commit is retried with
        the same flush)."""
        with self._lock:
            staged = self._staged.get(writer)
            if staged is None:
                staged = self._staged[writer] = _Staged(self.monotonic())
        if flush.checkpoint.key in staged.checkpoints:
            return staged
        for name in staged.landed:  # committed part-way before: those files are in
            staged.files.pop(name, None)
        staged.landed.clear()
        for file in flush.files:
            name = (
                lake_layout.INDEX_TABLE
                if file.kind == "index"
                else lake_layout.shard_table(file.kind)
            )
            footer = pq.read_metadata(pa.BufferReader(file.data))
            staged.files.setdefault(name, []).append(StagedFile(file.key, footer, len(file.data)))
        staged.files.setdefault(lake_layout.INDEX_TABLE, [])  # the commit point, always
        staged.checkpoints.append(flush.checkpoint.key)
        staged.superseded.extend(_superseded(writer, flush))
        staged.moved = staged.moved or flush.commit_to is not None
        staged.last = flush.checkpoint
        return staged

    def _due(self, writer: PartitionWriter, flush: PreparedFlush, staged: _Staged) -> bool:
        """Whether the staged flushes commit now.

        Quiet means nothing buffered behind the flush *and* nothing more in Kafka when the loop
        last looked (an empty buffer alone is often just a loop that has not fetched yet).
        Intervals are aligned to the monotonic clock's multiples of the interval, the same for
        every partition: the partitions of a process then commit in the same few seconds, and
        their commits to a table share snapshots in its committer.
        """
        interval = self.commit_interval_s
        if not interval or self.commit_pause_s or len(staged.checkpoints) >= MAX_STAGED_FLUSHES:
            return True
        quiet = writer.buffer.empty and (
            writer.highwater is None or flush.checkpoint.next >= writer.highwater
        )
        return quiet or self.monotonic() // interval > staged.since // interval

    def commit(self, writer: PartitionWriter, flush: PreparedFlush) -> CommitStats:
        with self._lock:
            landed = self._landed.get(writer)
        if landed is not None and flush.checkpoint.key in landed[0]:
            before = landed[1]
            log.info(
                "%s[%d]: flush %d was committed already; not again",
                writer.topic,
                writer.partition,
                flush.checkpoint.flush,
            )
            return CommitStats(flushes=0, kafka_offset=before.kafka_offset)
        staged = self._stage(writer, flush)
        if not self._due(writer, flush, staged):
            log.debug(
                "%s[%d]: flush %d staged (%d waiting to commit)",
                writer.topic,
                writer.partition,
                flush.checkpoint.flush,
                len(staged.checkpoints),
            )
            return CommitStats(flushes=0)
        return self._commit_staged(writer, staged)

    def settle(self, writer: PartitionWriter) -> CommitStats:
        with self._lock:
            staged = self._staged.get(writer)
        if staged is None or staged.last is None:
            return CommitStats(flushes=0)
        return self._commit_staged(writer, staged)

    def _commit_staged(self, writer: PartitionWriter, staged: _Staged) -> CommitStats:
        """Commit every staged flush of the partition: the stream type tables, then the index."""
        began = time.perf_counter()
        checkpoint = staged.last
        if checkpoint is None:
            return CommitStats(flushes=0)
        shard_tables = sorted(
            n for n in staged.files if n != lake_layout.INDEX_TABLE and n not in staged.landed
        )

        def submit(name: str) -> Future[Landed]:
            return self._submit(writer, name, staged.files[name], checkpoint)

        landed: list[Landed] = []
        try:
            if self.commit_pause_s:
                for name in shard_tables:
                    landed += wait_all([submit(name)])
                    writer.table_offsets[name] = checkpoint.next
                    staged.landed.add(name)
                    log.info(
                        "%s[%d]: committed %s up to offset %d, pausing %.1f s (fault injection)",
                        writer.topic,
                        writer.partition,
                        name,
                        checkpoint.next,
                        self.commit_pause_s,
                    )
                    time.sleep(self.commit_pause_s)
            else:
                # The stream type tables are independent (each records its own offset), so
                # they commit at once; the index, the commit point, after them all.
                landed += wait_all([submit(name) for name in shard_tables])
                for name in shard_tables:
                    writer.table_offsets[name] = checkpoint.next
                staged.landed.update(shard_tables)
            landed += wait_all([submit(lake_layout.INDEX_TABLE)])
            writer.table_offsets[lake_layout.INDEX_TABLE] = checkpoint.next
        except Fenced as exc:
            raise PartitionFenced(str(exc)) from exc
        except CatalogUnavailable as exc:
            raise StorageUnavailable(str(exc), retry_after=1.0) from exc
        released = [k for k in staged.superseded if k != checkpoint.key]
        stats = CommitStats(
            time.perf_counter() - began,
            sum(one.conflicts for one in landed),
            len(shard_tables) + 1,
            shared=sum(one.batch > 1 for one in landed),
            flushes=len(staged.checkpoints),
            kafka_offset=checkpoint.next if staged.moved else None,
            released=tuple(dict.fromkeys(released)),
        )
        with self._lock:
            self._staged.pop(writer, None)
            self._landed[writer] = (frozenset(staged.checkpoints), stats)
        return stats
