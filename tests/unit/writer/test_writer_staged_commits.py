"""The table ledger's staging rules, without a catalog: a fake committer records what each
table would commit, so when flushes are staged and what one commit carries are pure logic.

- a busy partition's flushes are staged and committed together once the oldest is
  ``commit_interval_s`` old: one commit per table carrying every staged file, the offset of
  the last flush, its checkpoint, and the checkpoints the batch replaces for deletion;
- a partition that went quiet (nothing buffered after the flush) commits at once;
- interval 0 commits every flush; a failed commit is retried without staging a flush twice;
- a refusal (another writer owns the partition) fences the partition.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from writer_fakes import FakeClock

from robolake.lake import layout
from robolake.lake.errors import CatalogUnavailable, Fenced
from robolake.writer.batcher import FlushPolicy
from robolake.writer.checkpoints import Checkpoint
from robolake.writer.committer import Landed, StagedFile
from robolake.writer.errors import PartitionFenced, StorageUnavailable
from robolake.writer.ledger import TableLedger
from robolake.writer.partition import FlushFile, PartitionWriter, PreparedFlush

TOPIC = "chunks"
INTERVAL_S = 10.0


@dataclass
class Submitted:
    table: str
    partition: int
    expected: int | None
    next_offset: int
    checkpoint: str | None
    #: The file keys the commit's manifest entries were built for.
    keys: list[str]


@dataclass
class FakeCommitters:
    """Every table's committer: records submissions; fails them when told to."""

    submitted: list[Submitted] = field(default_factory=list)
    fail_with: BaseException | None = None
    #: Tables whose next submission fails with this (once each).
    fail_once: dict[str, BaseException] = field(default_factory=dict)

    def make(self, tables: Any, name: str) -> FakeCommitter:
        return FakeCommitter(self, name)


@dataclass
class FakeCommitter:
    all: FakeCommitters
    name: str

    def submit(
        self,
        *,
        topic: str,
        partition: int,
        expected: int | None,
        next_offset: int,
        checkpoint: str | None,
        files: Sequence[StagedFile],
    ) -> Future[Landed]:
        future: Future[Landed] = Future()
        if self.all.fail_with is not None:
            future.set_exception(self.all.fail_with)
            return future
        once = self.all.fail_once.pop(self.name, None)
        if once is not None:
            future.set_exception(once)
            return future
        keys = [f.key.rsplit("/", 1)[-1] for f in files]
        self.all.submitted.append(
            Submitted(self.name, partition, expected, next_offset, checkpoint, keys)
        )
        future.set_result(Landed(already=False, conflicts=0, batch=1))
        return future


class FakeTables:
    bucket = "bucket"
    namespace = "ns"


class Buffer:
    def __init__(self, empty: bool) -> None:
        self.empty = empty
        self.memory = 0


def _parquet() -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table({"x": [1, 2, 3]}), sink)
    return sink.getvalue()


PARQUET = _parquet()


def _flush(
    n: int, first: int, next_offset: int, kinds: Sequence[str] = ("imu.v1",)
) -> PreparedFlush:
    files = tuple(
        FlushFile(f"{kind.split('.')[0]}-{n}.parquet", PARQUET, kind, 3) for kind in kinds
    )
    index = FlushFile(f"index-{n}.parquet", PARQUET, "index", 1)
    checkpoint = Checkpoint(
        topic=TOPIC,
        partition=0,
        first=first,
        next=next_offset,
        keys=tuple(f.key for f in (*files, index)),
        episodes=(),
        flush=n,
        token="tok",
    )
    return PreparedFlush(
        reason="size",
        checkpoint=checkpoint,
        files=(*files, index),
        commit_to=next_offset,
        index_complete=1,
        index_incomplete=0,
        buffered_bytes=100,
    )


def _ledger(interval_s: float, clock: FakeClock, committers: FakeCommitters) -> TableLedger:
    tables: Any = FakeTables()
    return TableLedger(
        None,  # type: ignore[arg-type]  # the staging path never touches the bucket
        tables,
        "tok",
        commit_interval_s=interval_s,
        monotonic=clock,
        committer=committers.make,
    )


def _writer(busy: bool) -> PartitionWriter:
    writer = PartitionWriter(TOPIC, 0, policy=FlushPolicy(1 << 20, 60.0), committed=0)
    writer.buffer = Buffer(empty=not busy)  # type: ignore[assignment]
    writer.last_checkpoint = "ck-before"
    writer.table_offsets = {layout.INDEX_TABLE: 0, layout.shard_table("imu.v1"): 0}
    return writer


def _run(ledger: TableLedger, writer: PartitionWriter, flush: PreparedFlush) -> Any:
    stats = ledger.commit(writer, flush)
    writer.finished(flush)
    return stats


def test_a_busy_partition_stages_flushes_and_commits_them_together() -> None:
    clock, committers = FakeClock(0.0), FakeCommitters()
    ledger = _ledger(INTERVAL_S, clock, committers)
    writer = _writer(busy=True)
    flushes = [_flush(1, 0, 10), _flush(2, 10, 20, ("imu.v1", "image.v1")), _flush(3, 20, 30)]

    first = _run(ledger, writer, flushes[0])
    clock.now += INTERVAL_S / 2
    second = _run(ledger, writer, flushes[1])
    assert committers.submitted == []
    for staged in (first, second):
        assert (staged.tables, staged.kafka_offset, staged.released) == (0, None, ())

    clock.now += INTERVAL_S / 2
    done = _run(ledger, writer, flushes[2])
    by_table = {s.table: s for s in committers.submitted}
    assert set(by_table) == {
        layout.INDEX_TABLE,
        layout.shard_table("imu.v1"),
        layout.shard_table("image.v1"),
    }
    imu = by_table[layout.shard_table("imu.v1")]
    assert imu.keys == ["imu-1.parquet", "imu-2.parquet", "imu-3.parquet"]
    assert (imu.expected, imu.next_offset, imu.checkpoint) == (0, 30, None)
    index = by_table[layout.INDEX_TABLE]
    assert index.keys == ["index-1.parquet", "index-2.parquet", "index-3.parquet"]
    assert index.checkpoint == flushes[2].checkpoint.key
    # The index commits last: it is the commit point.
    assert committers.submitted[-1].table == layout.INDEX_TABLE
    assert (done.flushes, done.kafka_offset) == (3, 30)
    assert set(done.released) == {
        "ck-before",
        flushes[0].checkpoint.key,
        flushes[1].checkpoint.key,
    }
    assert writer.table_offsets[layout.shard_table("image.v1")] == 30

    # The next batch starts its interval at its first flush, and expects what this one recorded.
    committers.submitted.clear()
    clock.now += INTERVAL_S
    _run(ledger, writer, _flush(4, 30, 40))
    assert committers.submitted == []
    clock.now += INTERVAL_S
    _run(ledger, writer, _flush(5, 40, 50))
    assert {(s.expected, s.next_offset) for s in committers.submitted} == {(30, 50)}


def test_a_quiet_partition_commits_at_once() -> None:
    clock, committers = FakeClock(0.0), FakeCommitters()
    ledger = _ledger(INTERVAL_S, clock, committers)
    writer = _writer(busy=False)
    flush = _flush(1, 0, 10)
    stats = _run(ledger, writer, flush)
    assert (stats.flushes, stats.kafka_offset) == (1, 10)
    assert stats.released == ("ck-before",)
    assert [s.table for s in committers.submitted][-1] == layout.INDEX_TABLE


def test_interval_zero_commits_every_flush() -> None:
    clock, committers = FakeClock(0.0), FakeCommitters()
    ledger = _ledger(0.0, clock, committers)
    writer = _writer(busy=True)
    for n in range(1, 4):
        stats = _run(ledger, writer, _flush(n, 10 * (n - 1), 10 * n))
        assert (stats.flushes, stats.kafka_offset) == (1, 10 * n)
    assert [s.next_offset for s in committers.submitted if s.table == layout.INDEX_TABLE] == [
        10,
        20,
        30,
    ]


def test_a_failed_commit_is_retried_without_staging_the_flush_twice() -> None:
    clock, committers = FakeClock(0.0), FakeCommitters()
    ledger = _ledger(INTERVAL_S, clock, committers)
    writer = _writer(busy=True)
    _run(ledger, writer, _flush(1, 0, 10))
    clock.now += INTERVAL_S
    second = _flush(2, 10, 20)
    committers.fail_with = CatalogUnavailable("catalog down")
    with pytest.raises(StorageUnavailable):
        ledger.commit(writer, second)  # the flush stays pending; the loop retries it as is
    committers.fail_with = None
    stats = _run(ledger, writer, second)
    imu = next(s for s in committers.submitted if s.table == layout.shard_table("imu.v1"))
    assert imu.keys == ["imu-1.parquet", "imu-2.parquet"]
    assert stats.flushes == 2


def test_a_retry_after_the_index_failed_does_not_append_the_landed_tables_again() -> None:
    """The stream type tables landed, the index commit did not (an outage, or no answer from an
    elected committer in time): the retry commits the index only. Resubmitting the landed
    tables with their new offset as the expected one passed the compare-and-set and appended
    the same files a second time (seen in the thawed-zombie-committer test)."""
    clock, committers = FakeClock(0.0), FakeCommitters()
    ledger = _ledger(0.0, clock, committers)
    writer = _writer(busy=False)
    flush = _flush(1, 0, 10)
    committers.fail_once[layout.INDEX_TABLE] = CatalogUnavailable("no answer in time")
    with pytest.raises(StorageUnavailable):
        ledger.commit(writer, flush)
    imu = layout.shard_table("imu.v1")
    assert [s.table for s in committers.submitted] == [imu]
    stats = _run(ledger, writer, flush)
    assert [s.table for s in committers.submitted] == [imu, layout.INDEX_TABLE]
    assert (stats.flushes, stats.kafka_offset) == (1, 10)
    assert writer.table_offsets == {imu: 10, layout.INDEX_TABLE: 10}


def test_a_flush_committed_before_is_not_committed_again() -> None:
    """A flush whose table commits landed but whose follow-up failed (the Kafka hint refused
    in a rebalance) stays pending and is handed to the ledger again at the hand-over: it must
    not be appended a second time (its tables now expect the new offset, so the
    compare-and-set would pass; seen in the thawed-zombie-committer test)."""
    clock, committers = FakeClock(0.0), FakeCommitters()
    ledger = _ledger(0.0, clock, committers)
    writer = _writer(busy=False)
    flush = _flush(1, 0, 10)
    first = ledger.commit(writer, flush)  # landed; the loop never got to writer.finished()
    submitted = len(committers.submitted)
    again = ledger.commit(writer, flush)
    assert len(committers.submitted) == submitted, "the landed flush was submitted again"
    assert (again.kafka_offset, again.tables) == (first.kafka_offset, 0)
    assert ledger.settle(writer).flushes == 0


def test_a_refused_commit_fences_the_partition() -> None:
    clock, committers = FakeClock(0.0), FakeCommitters()
    ledger = _ledger(0.0, clock, committers)
    writer = _writer(busy=False)
    committers.fail_with = Fenced("another writer committed it")
    with pytest.raises(PartitionFenced):
        ledger.commit(writer, _flush(1, 0, 10))


def test_a_partition_handed_over_commits_what_it_staged() -> None:
    clock, committers = FakeClock(0.0), FakeCommitters()
    ledger = _ledger(INTERVAL_S, clock, committers)
    writer = _writer(busy=True)
    assert ledger.settle(writer).flushes == 0  # nothing staged: nothing to do
    flush = _flush(1, 0, 10)
    _run(ledger, writer, flush)
    assert committers.submitted == []
    settled = ledger.settle(writer)
    assert (settled.flushes, settled.kafka_offset) == (1, 10)
    index = next(s for s in committers.submitted if s.table == layout.INDEX_TABLE)
    assert index.checkpoint == flush.checkpoint.key
    assert ledger.settle(writer).flushes == 0  # committed once
