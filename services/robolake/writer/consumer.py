"""The run loop: consume the chunk topic in a group, flush partitions, commit after storage.

One asyncio task drives everything, in the manner of arroyo's stream processor: poll a batch,
hand each record to its partition's :class:`~robolake.writer.partition.PartitionWriter`, flush
the partitions that are due, repeat -- also when the poll returns nothing, so age limits and
episode timeouts fire on an idle topic. CPU work (validation, Parquet) and blocking S3 calls run
in threads so heartbeats keep flowing.

Order of a flush (the whole exactly-once argument is in :mod:`robolake.writer.checkpoints`):
checkpoint object -> shard and index objects -> commit ``last + 1`` -> delete the previous
checkpoint. Dead letters are produced beside the loop (never awaited under its lock) and a
flush commits past a record only once that record's dead letter is acknowledged.

The consumer comes in through :class:`~robolake.writer.source.Consumer` (aiokafka's by
default), so every path below runs in unit tests against an in-memory broker.

Rebalances (eager protocol): on revocation each partition is flushed and committed while this
member still owns it; on assignment the new partitions stay paused until their recovery (delete
uncommitted objects, load the committed state, seek to the committed offset) is done. A lock
keeps rebalance callbacks and the loop from touching partition state at the same time.

Flushes run beside the loop (one in flight per partition, partitions concurrently): while a
flush is encoded its partition's records wait; while it uploads they go on into the next
buffer, so consumption does not stop for storage round trips.

Backpressure: when storage fails, :class:`~robolake.writer.errors.StorageUnavailable` pauses
every partition (the consumer keeps polling, so it stays in the group), the prepared flush is
kept and retried with exponential backoff, nothing is committed; on success consumption resumes.
Memory is capped: once buffered chunks plus prepared flushes reach
``WriterSettings.memory_limit_bytes`` the largest idle buffer is flushed early, and when every
buffer is already flushing the loop waits for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from robolake.episode.stream_types import StreamTypeRegistry, default_registry
from robolake.writer.batcher import Clock, FlushPolicy
from robolake.writer.checkpoints import JSON_CONTENT_TYPE, delete_quietly
from robolake.writer.deadletters import DeadLetterSink
from robolake.writer.errors import PartitionFenced, PartitionLost, StorageUnavailable
from robolake.writer.ledger import BucketLedger, CommitStats, Ledger
from robolake.writer.metrics import FlushReason, WriterMetrics
from robolake.writer.partition import (
    ConsumedRecord,
    DeadLetter,
    PartitionWriter,
    PreparedFlush,
    Verdict,
)
from robolake.writer.settings import WriterSettings
from robolake.writer.shards import PARQUET_CONTENT_TYPE
from robolake.writer.source import Consumer, kafka_consumer
from robolake.writer.storage import ObjectStore

log = logging.getLogger(__name__)

#: Records handed to the loop per poll. The memory cap is checked once per batch, and a fetch
#: of tiny chunks is ~11k records that cost ~125 MiB once buffered (measured): smaller batches
#: keep the overshoot to a few MiB. Large records are bounded by the fetch size instead.
POLL_RECORDS: Final = 1000


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, writer: Writer) -> None:
        self._writer = writer

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._writer._on_revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._writer._on_assigned(list(assigned))


class Writer:
    """One writer process's consumer, partitions and flush machinery."""

    def __init__(
        self,
        settings: WriterSettings,
        bootstrap: str,
        *,
        store: ObjectStore,
        dead_letters: DeadLetterSink,
        metrics: WriterMetrics | None = None,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
        registry: StreamTypeRegistry | None = None,
        consumer: Consumer | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        """``consumer`` defaults to aiokafka's (:func:`kafka_consumer`); tests pass a fake.
        ``ledger`` is the system of record: the Iceberg tables (:class:`TableLedger`) or, by
        default, Kafka's offsets with bucket checkpoints (:class:`BucketLedger`).
        ``clock`` is wall time (flush ages, episode timeouts), ``monotonic`` paces retries."""
        self.settings = settings
        self.bootstrap = bootstrap
        self.consumer: Consumer = (
            consumer if consumer is not None else kafka_consumer(settings, bootstrap)
        )
        self.monotonic = monotonic
        self.store = store
        self.ledger: Ledger = ledger if ledger is not None else BucketLedger(store)
        self.dead_letters = dead_letters
        self.metrics = metrics or WriterMetrics()
        self.clock = clock
        self.registry = registry or default_registry()
        self.policy = FlushPolicy(settings.flush_bytes, settings.flush_age_s)
        self.partitions: dict[TopicPartition, PartitionWriter] = {}
        self._recovering: set[TopicPartition] = set()
        #: The flush task of each partition that has one in flight.
        self._inflight: dict[TopicPartition, asyncio.Task[bool]] = {}
        #: Partitions whose flush is being encoded: their records wait.
        self._preparing: set[TopicPartition] = set()
        #: One flush encoded at a time: encoding is CPU-bound (parallel encodes gained nothing
        #: on two cores) and each holds its Parquet bytes beside its chunks until it returns,
        #: which the memory limit budgets once.
        self._encoding = asyncio.Semaphore(1)
        self._lock = asyncio.Lock()
        #: Dead letters being produced, per partition, with the offset of their record: a
        #: flush commits past a record only once its dead letter is acknowledged.
        self._deliveries: dict[TopicPartition, list[_Delivery]] = {}
        #: Per partition, the prepared flush whose objects are all stored but whose commit
        #: waits (for dead letters); compared by identity, so a new owner's flush never
        #: matches.
        self._stored: dict[TopicPartition, PreparedFlush] = {}
        self._retry_at: float | None = None  # monotonic; set while storage is failing
        self._backoff = 0.5
        self.metrics.buffer_capacity.set(settings.max_buffer_bytes)

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; then flush everything, commit and leave the group."""
        s = self.settings
        consumer = self.consumer
        consumer.subscribe([s.topic], listener=_Rebalance(self))
        await consumer.start()
        stored_bytes = asyncio.create_task(self._sum_stored_bytes(stop))
        log.info("writer consuming %s as group %s", s.topic, s.group_id)
        try:
            while not stop.is_set():
                batch = await consumer.getmany(
                    timeout_ms=int(s.tick_s * 1000), max_records=POLL_RECORDS
                )
                async with self._lock:
                    await self._recover_assigned()
                    for tp, records in batch.items():
                        await self._consume(tp, records)
                    await self._flush_due()
                self._update_gauges()
        finally:
            stored_bytes.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stored_bytes
            async with self._lock:
                for writer in list(self.partitions.values()):
                    await self._hand_over(writer, "shutdown")
                for tp in list(self._inflight):
                    await self._settle(tp)
                self.partitions.clear()
            for tp in list(self._deliveries):
                self._abandon_deliveries(tp)
            await consumer.stop()
            log.info("writer stopped; left group %s", s.group_id)

    # -- rebalances ------------------------------------------------------------------------

    def _on_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        consumer = self.consumer
        fresh = [tp for tp in assigned if tp not in self.partitions]
        self._recovering.update(fresh)
        if fresh:
            consumer.pause(*fresh)  # until recovered: nothing may be consumed before that
        log.info("assigned partitions %s", sorted(tp.partition for tp in assigned))
        self.metrics.assigned_partitions.set(len(assigned))

    async def _on_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        async with self._lock:
            for tp in revoked:
                self._recovering.discard(tp)
                writer = self.partitions.pop(tp, None)
                if writer is not None:
                    await self._hand_over(writer, "revoke")
                    self.metrics.lag.remove(str(tp.partition))
                self._abandon_deliveries(tp)
        log.info("revoked partitions %s", sorted(tp.partition for tp in revoked))

    async def _hand_over(self, writer: PartitionWriter, reason: FlushReason) -> None:
        """Flush and commit a partition we are about to give up, retrying for a bounded time.

        If storage stays down, the partition is given up uncommitted: its next owner deletes
        whatever this flush uploaded and replays it, so this loses nothing.
        """
        await self._settle(TopicPartition(writer.topic, writer.partition))
        deadline = self.monotonic() + max(10.0, 3 * self.settings.max_backoff_s)
        delay = 0.5
        while True:
            try:
                if await self._flush(writer, reason, pause_on_failure=False):
                    if writer.pending is None and writer.buffer.empty:
                        # What it staged commits now, not with a later flush it will never make.
                        if await self._record(writer, self.ledger.settle, pause_on_failure=False):
                            return
                    else:
                        continue  # the flush before was still pending; now the rest
            except PartitionLost:
                return
            if self.monotonic() >= deadline:
                log.warning(
                    "%s[%d]: storage unavailable at %s; leaving offsets from %s uncommitted "
                    "for the next owner to replay",
                    writer.topic,
                    writer.partition,
                    reason,
                    writer.committed,
                )
                return
            await asyncio.sleep(delay)
            delay = min(2 * delay, self.settings.max_backoff_s)

    async def _recover_assigned(self) -> None:
        consumer = self.consumer
        if not self._recovering or self._storage_paused():
            return
        for tp in sorted(self._recovering, key=lambda t: t.partition):
            if tp not in consumer.assignment():
                self._recovering.discard(tp)
                continue
            committed: int | None = await consumer.committed(tp)
            try:
                resume = await asyncio.to_thread(
                    self.ledger.resume, tp.topic, tp.partition, committed
                )
            except StorageUnavailable as exc:
                self._storage_failed(exc)
                return
            recovery = resume.recovery
            committed = resume.offset
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
            writer = PartitionWriter(
                tp.topic,
                tp.partition,
                policy=self.policy,
                episodes=recovery.episodes,
                committed=committed,
                flush=recovery.flush,
                dedup_window_s=self.settings.dedup_window_s,
                incomplete_after_s=self.settings.incomplete_after_s,
                clock=self.clock,
                registry=self.registry,
                layout=self.ledger.layout,
                floors=resume.floors,
                table_offsets=resume.table_offsets,
            )
            writer.last_checkpoint = recovery.resumed_from
            self.partitions[tp] = writer
            self._recovering.discard(tp)
            consumer.resume(tp)
            log.info(
                "%s[%d]: resuming at committed offset %s with %d episodes in state",
                tp.topic,
                tp.partition,
                committed,
                len(recovery.episodes),
            )

    # -- records ---------------------------------------------------------------------------

    async def _consume(self, tp: TopicPartition, records: Sequence[Any]) -> None:
        consumer = self.consumer
        writer = self.partitions.get(tp)
        if (
            writer is None
            or tp in self._preparing
            or (writer.pending is not None and tp not in self._inflight)
        ):
            # Revoked, still recovering, its flush being encoded (the encoder reads the
            # partition's state), or waiting for storage: read these again later. While a
            # prepared flush only uploads, records go on into the partition's next buffer.
            if tp in consumer.assignment() and records:
                consumer.seek(tp, records[0].offset)
            return
        verdicts = await asyncio.to_thread(_accept_all, writer, records)
        for record, verdict in zip(records, verdicts, strict=True):
            self.metrics.records.labels(verdict.outcome).inc()
            self.metrics.consumed_bytes.inc(len(record.value or b""))
            if verdict.dead_letter is not None:
                self._deliver(tp, verdict.dead_letter)
                self.metrics.dead_letters.labels(verdict.dead_letter.reason).inc()

    # -- dead letters ----------------------------------------------------------------------

    def _deliver(self, tp: TopicPartition, letter: DeadLetter) -> None:
        """Start producing a dead letter beside the loop; the covering flush waits for it.

        Never awaited under the loop lock: a dead-letter topic that is slow or down must not
        stop consumption, rebalance callbacks or other partitions' flushes -- only the commit
        past this record, which waits in :meth:`_delivered`.
        """
        task = asyncio.create_task(
            self.dead_letters.send(letter), name=f"dead letter {tp.topic}[{tp.partition}]"
        )
        self._deliveries.setdefault(tp, []).append(_Delivery(letter, task))

    async def _delivered(self, tp: TopicPartition, upto: int, *, wait_s: float | None) -> bool:
        """Whether every dead letter of a record below ``upto`` is acknowledged.

        A send that failed is started again (and False returned: the flush is retried, so
        nothing is committed past a dead letter that is not stored).
        """
        due = [d for d in self._deliveries.get(tp, []) if d.letter.record.offset < upto]
        if not due:
            return True
        done, waiting = await asyncio.wait([d.task for d in due], timeout=wait_s)
        ok = not waiting
        for delivery in due:
            if delivery.task not in done:
                continue
            if delivery.task.cancelled() or delivery.task.exception() is not None:
                ok = False
                record = delivery.letter.record
                log.warning(
                    "%s[%d]@%d: dead letter not stored (%r); sending it again",
                    record.topic,
                    record.partition,
                    record.offset,
                    None if delivery.task.cancelled() else delivery.task.exception(),
                )
                self.metrics.flush_failures.inc()
                delivery.task = asyncio.create_task(self.dead_letters.send(delivery.letter))
        if ok:
            remaining = [d for d in self._deliveries.get(tp, []) if d not in due]
            self._deliveries[tp] = remaining
        return ok

    def _abandon_deliveries(self, tp: TopicPartition) -> None:
        """The partition is gone: its uncommitted records are replayed (and dead-lettered
        again, at least once) by the next owner."""
        for delivery in self._deliveries.pop(tp, []):
            delivery.task.cancel()

    # -- flushing --------------------------------------------------------------------------

    async def _flush_due(self) -> None:
        """Start the flushes that are due, in the background; hold the loop only at the cap.

        A partition has at most one flush in flight (its checkpoint chain needs them in
        order); partitions flush concurrently, and consumption goes on while flushes upload.
        Once the process holds its memory limit, the largest partition without a flush in
        flight is flushed early; if every buffer is already flushing, the loop waits for one
        to finish -- that wait is the backpressure on consumption.
        """
        self._reap()
        if self._storage_paused():
            return
        now = self.clock()
        for tp, writer in list(self.partitions.items()):
            if tp not in self._inflight:
                reason = writer.due(now)
                if reason is not None:
                    self._start_flush(tp, writer, reason)
        limit = self.settings.memory_limit_bytes
        while self._held_bytes() >= limit and not self._storage_paused():
            idle = [
                (tp, w)
                for tp, w in self.partitions.items()
                if tp not in self._inflight and not w.buffer.empty
            ]
            if idle:
                tp, writer = max(idle, key=lambda item: item[1].buffer.memory)
                self._start_flush(tp, writer, "memory")
            elif self._inflight:
                await asyncio.wait(list(self._inflight.values()), return_when="FIRST_COMPLETED")
                self._reap()
            else:
                return

    def _held_bytes(self) -> int:
        return sum(w.held_bytes for w in self.partitions.values())

    def _start_flush(
        self, tp: TopicPartition, writer: PartitionWriter, reason: FlushReason
    ) -> None:
        self._preparing.add(tp)
        self._inflight[tp] = asyncio.create_task(
            self._background_flush(tp, writer, reason), name=f"flush {tp.topic}[{tp.partition}]"
        )

    async def _background_flush(
        self, tp: TopicPartition, writer: PartitionWriter, reason: FlushReason
    ) -> bool:
        try:
            return await self._flush(writer, reason, pause_on_failure=True, tp=tp)
        except PartitionLost:
            return True

    def _reap(self) -> None:
        """Forget finished flush tasks; a flush that raised (a bug) stops the writer."""
        for tp, task in list(self._inflight.items()):
            if task.done():
                del self._inflight[tp]
                task.result()

    async def _settle(self, tp: TopicPartition) -> None:
        """Wait for the partition's flush in flight, if any (its outcome is in its state)."""
        task = self._inflight.pop(tp, None)
        if task is not None:
            await asyncio.wait([task])
            task.result()

    async def _flush(
        self,
        writer: PartitionWriter,
        reason: FlushReason,
        *,
        pause_on_failure: bool,
        tp: TopicPartition | None = None,
    ) -> bool:
        """Store and commit one flush. False if storage failed (the flush stays pending).

        ``tp`` given: the flush runs beside the loop, which holds that partition's records
        back until the flush is prepared.
        """
        began = time.perf_counter()
        try:
            flush = writer.pending
            if flush is None:
                stream_types = [g.stream_type for g in writer.buffer.groups.values()]
                await asyncio.to_thread(self.ledger.ready, stream_types)
                async with self._encoding:
                    flush = await asyncio.to_thread(writer.prepare, reason)
        except StorageUnavailable as exc:
            self._flush_failed(writer, exc, pause_on_failure)
            return False
        finally:
            if tp is not None:
                self._preparing.discard(tp)
        if flush is None:
            return True
        try:
            tp_ = TopicPartition(writer.topic, writer.partition)
            if self._stored.get(tp_) is not flush:  # else stored already, its commit waited
                await self._store_flush(writer, flush)
                self._stored[tp_] = flush
        except StorageUnavailable as exc:
            self._flush_failed(writer, exc, pause_on_failure)
            return False
        if flush.commit_to is not None:
            # Bounded: a flush task that waited forever on a dead-letter topic that is down
            # would keep its partition from ever flushing again; retried on the next tick.
            waited = max(10.0, 3 * self.settings.max_backoff_s)
            if not await self._delivered(tp_, flush.commit_to, wait_s=waited):
                log.warning(
                    "%s[%d]: dead letters below offset %d not acknowledged yet; the flush is "
                    "stored, its commit waits",
                    writer.topic,
                    writer.partition,
                    flush.commit_to,
                )
                return False
        if not await self._record(
            writer, lambda w: self.ledger.commit(w, flush), pause_on_failure=pause_on_failure
        ):
            return False
        self._stored.pop(tp_, None)
        writer.finished(flush)
        self._storage_ok()
        elapsed = time.perf_counter() - began
        self._account(writer, flush, elapsed)
        return True

    async def _record(
        self,
        writer: PartitionWriter,
        call: Callable[[PartitionWriter], CommitStats],
        *,
        pause_on_failure: bool,
    ) -> bool:
        """Run a ledger commit (``call``, in a thread) and what follows it: metrics, log, Kafka's
        offset, the checkpoints it released. False if storage failed (retried by the caller);
        a refusal drops the partition (PartitionFenced, a PartitionLost)."""
        tp = TopicPartition(writer.topic, writer.partition)
        try:
            stats = await asyncio.to_thread(call, writer)
        except StorageUnavailable as exc:
            self._flush_failed(writer, exc, pause_on_failure)
            return False
        except PartitionFenced as exc:
            self.metrics.fenced.inc()
            self._lose(tp, f"fenced: {exc}")
            raise
        if stats.tables:
            self.metrics.table_commit_seconds.observe(stats.seconds)
            self.metrics.table_commit_conflicts.inc(stats.conflicts)
            self.metrics.table_commit_flushes.observe(stats.flushes)
            log.info(
                "%s[%d]: committed %d flush(es) to %d tables in %.2f s (%d conflicts, %d "
                "snapshots shared with other partitions)",
                writer.topic,
                writer.partition,
                stats.flushes,
                stats.tables,
                stats.seconds,
                stats.conflicts,
                stats.shared,
            )
        if stats.kafka_offset is not None:
            if self.ledger.kafka_is_truth:
                await self._commit(writer, stats.kafka_offset)
            else:
                await self._hint(writer, stats.kafka_offset)
        if stats.released:
            await asyncio.to_thread(delete_quietly, self.store, list(stats.released))
        return True

    def _flush_failed(
        self, writer: PartitionWriter, exc: StorageUnavailable, pause_on_failure: bool
    ) -> None:
        self.metrics.flush_failures.inc()
        if pause_on_failure:
            self._storage_failed(exc)
        else:
            log.warning("%s[%d]: flush failed: %s", writer.topic, writer.partition, exc)

    def _lose(self, tp: TopicPartition, why: str) -> None:
        """Drop a partition's state; if still assigned, recover it again (from the record)."""
        consumer = self.consumer
        log.warning(
            "%s[%d]: %s; dropping the partition's state, it resumes from the committed record",
            tp.topic,
            tp.partition,
            why,
        )
        self.partitions.pop(tp, None)
        self._stored.pop(tp, None)
        if tp in consumer.assignment():
            self._recovering.add(tp)
            consumer.pause(tp)

    async def _store_flush(self, writer: PartitionWriter, flush: PreparedFlush) -> None:
        checkpoint = flush.checkpoint
        await asyncio.to_thread(
            self.store.put, checkpoint.key, checkpoint.to_bytes(), JSON_CONTENT_TYPE
        )
        for file in flush.files:
            await asyncio.to_thread(self.store.put, file.key, file.data, PARQUET_CONTENT_TYPE)
            log.debug("%s[%d]: uploaded %s", writer.topic, writer.partition, file.key)
            if self.settings.upload_pause_s:
                log.info(
                    "%s[%d]: uploaded %s (offsets %d..%s), pausing %.1f s (fault injection)",
                    writer.topic,
                    writer.partition,
                    file.key,
                    checkpoint.first,
                    flush.commit_to,
                    self.settings.upload_pause_s,
                )
                await asyncio.sleep(self.settings.upload_pause_s)

    async def _commit(self, writer: PartitionWriter, offset: int) -> None:
        consumer = self.consumer
        tp = TopicPartition(writer.topic, writer.partition)
        try:
            await consumer.commit({tp: offset})
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            self._lose(tp, f"commit of offset {offset} to Kafka failed ({exc!r})")
            raise PartitionLost(f"{tp.topic}[{tp.partition}] commit failed: {exc!r}") from exc

    async def _hint(self, writer: PartitionWriter, offset: int) -> None:
        """Kafka's committed offset where the tables are the truth: a hint for lag tools. Its
        failure (the group rebalancing) changes nothing of the flush, which is durable: the
        revocation that follows hands the partition over as usual. Failing the flush here left
        it pending, and the hand-over committed it to the tables a second time."""
        tp = TopicPartition(writer.topic, writer.partition)
        try:
            await self.consumer.commit({tp: offset})
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            log.info(
                "%s[%d]: Kafka's committed offset (a hint; the tables hold %d) not updated: %r",
                writer.topic,
                writer.partition,
                offset,
                exc,
            )

    def _account(self, writer: PartitionWriter, flush: PreparedFlush, elapsed: float) -> None:
        m = self.metrics
        m.flushes.labels(flush.reason).inc()
        m.flush_seconds.observe(elapsed)
        for file in flush.files:
            if file.kind == "index":
                continue
            m.shard_files.labels(file.kind).inc()
            m.shard_bytes.labels(file.kind).inc(len(file.data))
            m.shard_rows.labels(file.kind).inc(file.rows)
        m.index_rows.labels("true").inc(flush.index_complete)
        m.index_rows.labels("false").inc(flush.index_incomplete)
        log.info(
            "%s[%d]: flushed offsets %d..%s (%s): %d files, %.1f MiB from %.1f MiB buffered, "
            "%d episodes indexed, %.2f s",
            writer.topic,
            writer.partition,
            flush.checkpoint.first,
            None if flush.commit_to is None else flush.commit_to - 1,
            flush.reason,
            len(flush.files),
            flush.nbytes / 2**20,
            flush.buffered_bytes / 2**20,
            flush.index_complete + flush.index_incomplete,
            elapsed,
        )

    # -- backpressure ----------------------------------------------------------------------

    def _storage_paused(self) -> bool:
        return self._retry_at is not None and self.monotonic() < self._retry_at

    def _storage_failed(self, exc: StorageUnavailable) -> None:
        consumer = self.consumer
        delay = max(self._backoff, exc.retry_after if self._retry_at is None else 0.0)
        self._retry_at = self.monotonic() + delay
        self._backoff = min(2 * self._backoff, self.settings.max_backoff_s)
        consumer.pause(*consumer.assignment())
        self.metrics.paused.set(1)
        log.warning("storage unavailable (%s); consumption paused, retry in %.1f s", exc, delay)

    def _storage_ok(self) -> None:
        """A flush went through: resume every partition that has nothing left to retry."""
        consumer = self.consumer
        ready = [tp for tp, w in self.partitions.items() if w.pending is None]
        consumer.resume(*ready)
        if self._retry_at is None:
            return
        self._retry_at = None
        self._backoff = 0.5
        self.metrics.paused.set(0)
        log.info("storage is back; consumption resumed")

    # -- gauges ----------------------------------------------------------------------------

    def _update_gauges(self) -> None:
        consumer = self.consumer
        self.metrics.buffered_bytes.set(self._held_bytes())
        # A member the group kicked out (frozen past its session) has lost its assignment
        # before the revocation callback runs: those partitions are not asked about.
        assigned = consumer.assignment()
        for tp, writer in self.partitions.items():
            if tp not in assigned:
                continue
            highwater = consumer.highwater(tp)
            writer.highwater = highwater
            if highwater is not None:
                self.metrics.lag.labels(str(tp.partition)).set(highwater - (writer.committed or 0))

    async def _sum_stored_bytes(self, stop: asyncio.Event) -> None:
        interval = self.settings.stored_bytes_interval_s
        if interval <= 0:
            return
        while not stop.is_set():
            try:
                total = await asyncio.to_thread(self.ledger.stored_bytes)
                self.metrics.stored_bytes.set(total)
            except StorageUnavailable as exc:
                log.info("stored-bytes listing skipped: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)


class _Delivery:
    """One dead letter on its way to the dead-letter topic."""

    __slots__ = ("letter", "task")

    def __init__(self, letter: DeadLetter, task: asyncio.Task[None]) -> None:
        self.letter = letter
        self.task = task


def _accept_all(writer: PartitionWriter, records: Sequence[ConsumedRecord]) -> list[Verdict]:
    return [writer.accept(record) for record in records]
