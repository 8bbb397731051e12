"""One committer per table in a writer process: the flushes of all its partitions that wait to
commit to a table land in one snapshot.

Why: a snapshot costs the same whatever it adds (load the metadata, write a manifest and a
manifest list, POST the commit), and the CPU of it is pyiceberg's Python, which competes with
the writer's encoding for the GIL: 40 % of a draining writer's profile samples were in pyiceberg
when each partition's flush committed to every table by itself (``make bench`` drain, py-spy).
The partitions of one writer committing one by one to the same tables also conflicted with each
other (17 conflicts in 38 flushes), and a conflict redoes all of it. This is the Iceberg Kafka
Connect sink's pattern (workers write files, one committer commits them with the offsets) within
one process: no election is needed, and commits of other processes still meet the
compare-and-set of :func:`~robolake.lake.commits.commit_partitions`.

A committer batches what is queued when it becomes free, and waits for nothing more: a lone
flush commits at once, and under load the batch grows by itself while a commit runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow.parquet as pq

from robolake.lake.catalog import LakeTables
from robolake.lake.commits import PartitionCommit, commit_partitions, data_file_from_footer
from robolake.lake.errors import CatalogUnavailable, Fenced

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Landed:
    """A flush's commit to one table."""

    #: Its commit had landed before (a retry after a lost response).
    already: bool
    #: Conflicts the batch it was in retried (counted on the batch's first request only).
    conflicts: int
    #: Flushes committed in the same snapshot, itself included.
    batch: int


@dataclass(frozen=True)
class StagedFile:
    """A stored Parquet file waiting to be committed: its manifest entry is built from the
    footer against the table's metadata at commit time (the schema may have evolved)."""

    key: str
    footer: pq.FileMetaData
    size: int


@dataclass
class _Request:
    topic: str
    partition: int
    expected: int | None
    next_offset: int
    checkpoint: str | None
    files: Sequence[StagedFile]
    future: Future[Landed] = field(default_factory=Future)


class Committer(Protocol):
    """Where a table's commits are queued."""

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
        """Queue one commit; the future raises Fenced or CatalogUnavailable."""
        ...


class TableCommitter:
    """Commits the queued flushes of one table, a batch at a time, in its own thread."""

    def __init__(self, tables: LakeTables, name: str, *, pause_s: float = 0.0) -> None:
        """``pause_s``: fault injection, hold still before each batch's commit
        (``ROBOLAKE_WRITER_COMMITTER_PAUSE``), so a test can freeze an elected committer with
        requests in hand."""
        self.tables = tables
        self.name = name
        self.pause_s = pause_s
        self._queue: list[_Request] = []
        self._ready = threading.Condition()
        #: Whether another process commits to this table too (seen as a conflict).
        self._shared = False
        self._thread = threading.Thread(target=self._run, name=f"commit-{name}", daemon=True)
        self._thread.start()

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
        """Queue one flush's commit; the future raises Fenced or CatalogUnavailable."""
        request = _Request(topic, partition, expected, next_offset, checkpoint, files)
        with self._ready:
            self._queue.append(request)
            self._ready.notify()
        return request.future

    def _take(self) -> list[_Request]:
        """Everything queued, at most one request per partition (a partition lost and assigned
        again may have two; the second waits for the next batch)."""
        with self._ready:
            while not self._queue:
                self._ready.wait()
            batch: list[_Request] = []
            seen: set[tuple[str, int]] = set()
            rest: list[_Request] = []
            for request in self._queue:
                key = (request.topic, request.partition)
                (rest if key in seen else batch).append(request)
                seen.add(key)
            self._queue = rest
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            try:
                self._commit(batch)
            except BaseException as exc:  # every waiter hears of it; the thread goes on
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(exc)

    def _commit(self, batch: list[_Request]) -> None:
        if self.pause_s:
            log.info(
                "%s: holding %d commit request(s) for %.1f s before committing (fault injection)",
                self.name,
                len(batch),
                self.pause_s,
            )
            time.sleep(self.pause_s)
        # While this process is the table's only writer, its own commits keep the cached view
        # current and a load per commit is a GET and a metadata parse for nothing (a fifth of a
        # commit's CPU, profiled). Once another process's commit has made it conflict, every
        # commit starts from the newest metadata: a failed attempt costs more than a load.
        table = self.tables.load(self.name, refresh=self._shared)
        bucket = self.tables.bucket
        requests = [
            PartitionCommit(
                r.topic,
                r.partition,
                r.expected,
                r.next_offset,
                files=[
                    data_file_from_footer(
                        table.metadata, f"s3://{bucket}/{f.key}", f.footer, f.size
                    )
                    for f in r.files
                ],
                checkpoint=r.checkpoint,
            )
            for r in batch
        ]
        done = commit_partitions(table, requests)
        self._shared = self._shared or done.conflicts > 0
        self.tables.remember(self.name, done.table)
        if len(batch) > 1:
            log.debug("%s: %d flushes in one snapshot", self.name, len(batch))
        for i, request in enumerate(batch):
            refused = done.refused[i]
            if refused is not None:
                request.future.set_exception(refused)
            else:
                conflicts = done.conflicts if i == 0 else 0
                request.future.set_result(Landed(done.already[i], conflicts, len(batch)))


def wait_all(futures: Sequence[Future[Landed]]) -> list[Landed]:
    """Every outcome, once all have ended (a half-waited set would race the flush's retry);
    a refusal is raised before an outage, as it drops the partition."""
    outcomes: list[Landed | BaseException] = []
    for future in futures:
        try:
            outcomes.append(future.result())
        except (Fenced, CatalogUnavailable) as exc:
            outcomes.append(exc)
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    fenced = [f for f in failures if isinstance(f, Fenced)]
    if failures:
        raise (fenced or failures)[0]
    return [o for o in outcomes if isinstance(o, Landed)]
