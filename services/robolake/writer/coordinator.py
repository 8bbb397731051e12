"""One elected committer per writer group (``--committer elected``): the Iceberg sink's pattern.

Why. With one committer per table *per process* (:mod:`robolake.writer.committer`) the writers
of a group still commit to the same tables concurrently, and Iceberg's optimistic concurrency
makes them conflict: three writers at full load retried 2.6 times per commit (``make bench``,
docs/tables.md), each retry a metadata load and a new manifest list, and p99 reached 4.9 s.
The Apache Iceberg Kafka Connect sink answers this with workers that only write files and one
coordinator that commits them. Here:

- every writer process stores its flushes as before and, instead of committing, sends each
  table's :class:`~robolake.writer.control.CommitRequest` to the request topic through
  :class:`CommitClient` (a :class:`~robolake.writer.committer.Committer` for the table ledger);
- every writer process is also a candidate committer: a consumer of the request topic (one
  partition) in the group ``<writer group>.committer``. Kafka's group protocol gives that one
  partition to exactly one live member -- the election, with failover after a session timeout
  and no code of ours. The elected one feeds the requests to its
  :class:`~robolake.writer.committer.TableCommitter` of each table (which batches whatever is
  queued into one snapshot) and answers on the result topic;
- the requester's future resolves from the answer, and the run loop goes on exactly as if it
  had committed itself (Kafka hint, checkpoint deletion, metrics, fencing).

What keeps it exactly once is unchanged: every commit is the compare-and-set of
:func:`~robolake.lake.commits.commit_partitions` on the partition's recorded offset, whoever
runs it. So the sink's worst bugs cannot happen here: a zombie committer (frozen past its
session, thawed with a batch in hand) commits only what still matches the table's offsets --
it can never rewind one, as a commit only moves an offset from the value it found; two
committers after a rebalance both meet the same check (one wins, the other's requests are
answered ``already`` or ``fenced``); a request delivered twice (a committer crashed before
committing its consumer offset, a worker retried after a timeout) finds its commit already
landed (:attr:`~robolake.writer.committer.Landed.already`). A request older than
:data:`MAX_REQUEST_AGE_S` is skipped unanswered: its writer has timed out and asked again, and
the files it names may be near the orphan retention.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final, Protocol, cast

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)
from aiokafka.errors import KafkaError

from robolake.episode.topics import COMMIT_REQUEST_TOPIC, COMMIT_RESULT_TOPIC, MAX_RECORD_BYTES
from robolake.kafka.producer import (
    DurableProducer,
    ProducerConfig,
    ProducerFactory,
    aiokafka_producer,
)
from robolake.lake.catalog import LakeTables
from robolake.lake.errors import CatalogUnavailable, Fenced
from robolake.provision import ProvisionError, commit_topics, ensure_topics
from robolake.writer.committer import Committer, Landed, StagedFile, TableCommitter
from robolake.writer.control import CommitRequest, CommitResult, ControlMessageError, Status
from robolake.writer.metrics import WriterMetrics
from robolake.writer.settings import WriterSettings

log = logging.getLogger(__name__)

#: Requests older than this are skipped: their writers asked again long ago (seconds; far below
#: the orphan retention of 3 days, so a file a request names is never already deleted).
MAX_REQUEST_AGE_S: Final = 600.0

#: Sends one message (key, value) to a control topic; raises on failure.
Send = Callable[[bytes, bytes], Coroutine[object, object, None]]


def committer_group(writer_group: str) -> str:
    """The consumer group whose one member is the writer group's elected committer."""
    return f"{writer_group}.committer"


class CommitClient:
    """A writer process's way to the elected committer: one :class:`Committer` per table.

    ``submit`` is called from the ledger's threads; the request is sent on ``loop`` and its
    future resolved when the answer comes in (:meth:`deliver`) or failed with
    CatalogUnavailable after ``timeout_s`` (no committer elected, or it died: the flush is
    retried, and a duplicate request is answered ``already``).
    """

    def __init__(
        self,
        group: str,
        send: Send,
        loop: asyncio.AbstractEventLoop,
        *,
        timeout_s: float = 30.0,
    ) -> None:
        self.group = group
        self._send = send
        self._loop = loop
        self.timeout_s = timeout_s
        self._pending: dict[str, Future[Landed]] = {}
        self._lock = threading.Lock()

    def committer(self, tables: LakeTables, name: str) -> Committer:
        """The table ledger's committer factory."""
        return _RemoteCommitter(self, name)

    @property
    def waiting(self) -> int:
        """Requests sent and not answered yet."""
        with self._lock:
            return len(self._pending)

    def submit(self, request: CommitRequest) -> Future[Landed]:
        future: Future[Landed] = Future()
        with self._lock:
            self._pending[request.request_id] = future
        key = self.group.encode()
        sent: Future[None] = asyncio.run_coroutine_threadsafe(
            self._send(key, request.to_bytes()), self._loop
        )
        sent.add_done_callback(lambda done: self._sent(request.request_id, done))
        return future

    def _sent(self, request_id: str, done: Future[None]) -> None:
        exc = done.exception()
        if exc is not None:
            self._fail(request_id, f"could not send the commit request: {exc}")
            return
        self._loop.call_soon_threadsafe(
            self._loop.call_later,
            self.timeout_s,
            self._fail,
            request_id,
            f"no answer from the group's elected committer within {self.timeout_s:g} s "
            "(none elected yet, or it failed over)",
        )

    def _fail(self, request_id: str, why: str) -> None:
        with self._lock:
            future = self._pending.pop(request_id, None)
        if future is not None and not future.done():
            future.set_exception(CatalogUnavailable(why))

    def deliver(self, key: bytes | None, value: bytes) -> None:
        """An answer from the result topic (anyone's: other groups' and strangers' are skipped)."""
        if key is not None and key != self.group.encode():
            return
        try:
            result = CommitResult.from_bytes(value)
        except ControlMessageError as exc:
            log.warning("skipping a commit result: %s", exc)
            return
        if result.group != self.group:
            return
        with self._lock:
            future = self._pending.pop(result.request_id, None)
        if future is None or future.done():
            return  # answered before, timed out, or another process's request
        if result.status == "fenced":
            future.set_exception(Fenced(result.message))
        elif result.status == "unavailable":
            future.set_exception(CatalogUnavailable(result.message))
        else:
            future.set_result(Landed(result.status == "already", result.conflicts, result.batch))


@dataclass
class _RemoteCommitter:
    client: CommitClient
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
        request = CommitRequest(
            group=self.client.group,
            request_id=uuid.uuid4().hex,
            table=self.name,
            topic=topic,
            partition=partition,
            expected=expected,
            next_offset=next_offset,
            checkpoint=checkpoint,
            files=tuple(files),
        )
        return self.client.submit(request)


class CommitCoordinator:
    """The elected committer's logic: a request in, its answer out (once committed).

    ``committer`` makes a table's committer (tests pass a fake); ``clock`` is wall time, to
    compare with the requests' Kafka timestamps.
    """

    def __init__(
        self,
        group: str,
        tables: LakeTables,
        *,
        committer: Callable[[LakeTables, str], Committer] = TableCommitter,
        clock: Callable[[], float] = time.time,
        max_age_s: float = MAX_REQUEST_AGE_S,
    ) -> None:
        self.group = group
        self.tables = tables
        self._make_committer = committer
        self.clock = clock
        self.max_age_s = max_age_s
        self._committers: dict[str, Committer] = {}
        #: Answers given, by status (the metrics read it).
        self.answered: dict[Status, int] = {}

    def handle(
        self, key: bytes | None, value: bytes, timestamp_s: float
    ) -> Future[CommitResult] | None:
        """Start committing one request; None if it is not for this group, unreadable, or too
        old (see the module's docstring)."""
        if key is not None and key != self.group.encode():
            return None
        try:
            request = CommitRequest.from_bytes(value)
        except ControlMessageError as exc:
            log.warning("skipping a commit request: %s", exc)
            return None
        if request.group != self.group:
            return None
        age = self.clock() - timestamp_s
        if age > self.max_age_s:
            log.info(
                "skipping commit request %s for %s[%d] (%.0f s old; its writer asked again)",
                request.request_id,
                request.topic,
                request.partition,
                age,
            )
            return None
        committer = self._committers.get(request.table)
        if committer is None:
            committer = self._committers[request.table] = self._make_committer(
                self.tables, request.table
            )
        landed = committer.submit(
            topic=request.topic,
            partition=request.partition,
            expected=request.expected,
            next_offset=request.next_offset,
            checkpoint=request.checkpoint,
            files=request.files,
        )
        answer: Future[CommitResult] = Future()
        landed.add_done_callback(lambda done: answer.set_result(self._answer(request, done)))
        return answer

    def _answer(self, request: CommitRequest, done: Future[Landed]) -> CommitResult:
        exc = done.exception()
        status: Status
        if exc is None:
            one = done.result()
            status = "already" if one.already else "landed"
            result = CommitResult(
                self.group, request.request_id, status, conflicts=one.conflicts, batch=one.batch
            )
        elif isinstance(exc, Fenced):
            status = "fenced"
            result = CommitResult(self.group, request.request_id, status, str(exc))
        else:
            if not isinstance(exc, CatalogUnavailable):
                log.error("commit of request %s failed", request.request_id, exc_info=exc)
            status = "unavailable"
            result = CommitResult(
                self.group, request.request_id, status, f"{type(exc).__name__}: {exc}"
            )
        self.answered[status] = self.answered.get(status, 0) + 1
        log.log(
            logging.DEBUG if status == "landed" else logging.INFO,
            "answered commit request %s for %s[%d] on %s: %s %s",
            request.request_id,
            request.topic,
            request.partition,
            request.table,
            status,
            result.message,
        )
        return result


class ControlRecord(Protocol):
    """What the coordinator reads of a Kafka record (aiokafka's ConsumerRecord has it)."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


class ControlConsumer(Protocol):
    """The request topic's consumer in the committer group (aiokafka's, or a test's)."""

    async def getmany(
        self, *, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[object, list[ControlRecord]]: ...

    async def commit(self, offsets: dict[object, int]) -> None: ...


async def serve_requests(
    consumer: ControlConsumer,
    coordinator: CommitCoordinator,
    answer: Send,
    stop: asyncio.Event,
    *,
    on_answer: Callable[[CommitResult], object] | None = None,
) -> None:
    """Answer the requests this process is assigned (none unless elected) until ``stop``.

    The consumer's offset is committed only below requests answered: a committer that dies
    leaves the rest to its successor, which answers them again (``already``, see above).
    """
    # Per partition of the request topic, the requests read and not yet answered, in order
    # (None: skipped, nothing to wait for).
    inflight: dict[object, list[tuple[int, asyncio.Task[None] | None]]] = {}
    # Decoding a request parses every file's footer: off the event loop, which also carries
    # this writer's heartbeats, and on a thread of its own. Not asyncio's default pool: the
    # writer's ledger commits wait in that pool for these very answers, and a group's flushes
    # arrive together (wall-time intervals), so twelve partitions committing at once held
    # every default thread and no request could be decoded until each timed out (60 s, seen
    # in the memory bench).
    decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="commit-requests")
    loop = asyncio.get_running_loop()

    async def reply(request: Future[CommitResult]) -> None:
        result = await asyncio.wrap_future(request)
        await answer(coordinator.group.encode(), result.to_bytes())
        if on_answer is not None:
            on_answer(result)

    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            for tp, records in batch.items():
                queue = inflight.setdefault(tp, [])
                for record in records:
                    started = (
                        None
                        if record.value is None
                        else await loop.run_in_executor(
                            decoder,
                            coordinator.handle,
                            record.key,
                            record.value,
                            record.timestamp / 1000,
                        )
                    )
                    task = asyncio.create_task(reply(started)) if started else None
                    queue.append((record.offset, task))
            await _commit_answered(consumer, inflight)
    finally:
        tasks = [task for queue in inflight.values() for _, task in queue if task is not None]
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
        decoder.shutdown(wait=False)


async def _commit_answered(
    consumer: ControlConsumer, inflight: dict[object, list[tuple[int, asyncio.Task[None] | None]]]
) -> None:
    offsets: dict[object, int] = {}
    for tp, queue in inflight.items():
        last: int | None = None
        while queue and (queue[0][1] is None or queue[0][1].done()):
            offset, task = queue.pop(0)
            if task is not None and not task.cancelled() and task.exception() is not None:
                # The answer could not be sent (Kafka down): its requester times out and asks
                # again; the request is not read again from here.
                log.warning("could not answer a commit request: %s", task.exception())
            last = offset
        if last is not None:
            offsets[tp] = last + 1
    if offsets:
        try:
            await consumer.commit(offsets)
        except Exception as exc:  # no longer elected: the successor answers what is left
            log.info("could not commit the commit requests' offsets (%s)", exc)


# -- the Kafka build ---------------------------------------------------------------------------

#: When this process started (ns): its seniority in the committer election.
_STARTED_NS: Final = time.time_ns()


class EldestFirst(AbstractPartitionAssignor):  # type: ignore[misc]
    """Gives the request topic to the longest-running candidate: a stable election.

    Kafka's own assignors hand a lone partition to the member whose id sorts first, so every
    writer that joins or restarts could move the role (a commit pause each time: seen with
    round-robin, the role moved at each of three writers' starts). Each candidate sends its
    start time in the group's metadata; the eldest keeps the role until it leaves or dies.
    """

    name = "robolake-eldest"
    version = 0

    @classmethod
    def assign(
        cls,
        cluster: ClusterMetadata,
        members: Mapping[str, ConsumerProtocolMemberMetadata],
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        def seniority(member: str) -> tuple[int, str]:
            data = members[member].user_data or b""
            started = int.from_bytes(data[:8], "big") if len(data) >= 8 else 2**63
            return started, member

        topics = sorted({t for m in members.values() for t in m.subscription})
        eldest = min(members, key=seniority) if members else None
        assignment: dict[str, ConsumerProtocolMemberAssignment] = {}
        for member in members:
            owned = (
                [(t, sorted(cluster.partitions_for_topic(t) or ())) for t in topics]
                if member == eldest
                else []
            )
            assignment[member] = ConsumerProtocolMemberAssignment(cls.version, owned, b"")
        return assignment

    @classmethod
    def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        return ConsumerProtocolMemberMetadata(
            cls.version, list(topics), _STARTED_NS.to_bytes(8, "big")
        )

    @classmethod
    def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
        return None


class _Election(ConsumerRebalanceListener):  # type: ignore[misc]
    """Logs and shows (metric) whether this process holds the request topic: is elected.

    Kafka's eager rebalances revoke and reassign the partition at every join, also to the
    member that keeps it: only a change of holder is logged."""

    def __init__(self, group: str, metrics: WriterMetrics) -> None:
        self.group = group
        self.metrics = metrics
        self.elected = False

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        elected = bool(list(assigned))
        if elected and not self.elected:
            log.info("elected committer of group %s: committing every writer's flushes", self.group)
        elif self.elected and not elected:
            log.info("no longer the elected committer of group %s", self.group)
        self.elected = elected
        self.metrics.elected_committer.set(1 if elected else 0)


async def start_client(
    stack: contextlib.AsyncExitStack,
    settings: WriterSettings,
    bootstrap: str,
    *,
    factory: ProducerFactory = aiokafka_producer,
) -> tuple[CommitClient, Send]:
    """The commit topics exist, a producer for both, and the answers read from now on: the
    client and the send of answers (for :func:`start_candidacy`). Everything is closed by
    ``stack``, after the writer (its hand-over commits through the client)."""
    try:
        await ensure_topics(bootstrap, commit_topics())
    except (ProvisionError, KafkaError) as exc:  # e.g. no CreateTopics right: init made them
        log.warning("could not check the commit topics (%s); expecting robolake init's", exc)
    producer = DurableProducer(
        ProducerConfig(bootstrap, client_id="robolake-writer-commits"), factory=factory
    )
    await producer.start()
    stack.push_async_callback(producer.stop)

    async def send_request(key: bytes, value: bytes) -> None:
        await producer.send(COMMIT_REQUEST_TOPIC, value, key=key)

    async def send_answer(key: bytes, value: bytes) -> None:
        await producer.send(COMMIT_RESULT_TOPIC, value, key=key)

    client = CommitClient(
        settings.group_id,
        send_request,
        asyncio.get_running_loop(),
        timeout_s=max(30.0, 2 * settings.session_timeout_s),
    )
    answers = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        client_id="robolake-writer-commit-answers",
        enable_auto_commit=False,
        max_partition_fetch_bytes=MAX_RECORD_BYTES,
    )
    await answers.start()
    stack.push_async_callback(answers.stop)
    tp = TopicPartition(COMMIT_RESULT_TOPIC, 0)
    answers.assign([tp])
    await answers.seek_to_end(tp)
    await answers.position(tp)  # resolved now: no answer to a request sent later is skipped

    async def read() -> None:
        while True:
            batch = await answers.getmany(timeout_ms=1000, max_records=500)
            for records in batch.values():
                for record in records:
                    if record.value is not None:
                        client.deliver(record.key, record.value)

    await _background(stack, read(), "commit answers")
    return client, send_answer


async def start_candidacy(
    stack: contextlib.AsyncExitStack,
    settings: WriterSettings,
    bootstrap: str,
    tables: LakeTables,
    send_answer: Send,
    metrics: WriterMetrics,
) -> CommitCoordinator:
    """Join the committer group; while elected, commit the group's requests."""
    group = committer_group(settings.group_id)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id="robolake-writer-committer",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=MAX_RECORD_BYTES,
        session_timeout_ms=int(settings.session_timeout_s * 1000),
        heartbeat_interval_ms=max(100, int(settings.session_timeout_s * 100)),
        max_poll_interval_ms=600_000,
        partition_assignment_strategy=(EldestFirst,),
    )
    consumer.subscribe([COMMIT_REQUEST_TOPIC], listener=_Election(settings.group_id, metrics))
    await consumer.start()
    stack.push_async_callback(consumer.stop)
    coordinator = CommitCoordinator(
        settings.group_id,
        tables,
        committer=functools.partial(TableCommitter, pause_s=settings.committer_pause_s),
    )
    stop = asyncio.Event()

    def answered(result: CommitResult) -> None:
        metrics.commit_requests_answered.labels(result.status).inc()

    await _background(
        stack,
        serve_requests(
            cast(ControlConsumer, consumer), coordinator, send_answer, stop, on_answer=answered
        ),
        "commit requests",
        stop,
    )
    log.info(
        "writer is a candidate committer of group %s (consumer group %s)", settings.group_id, group
    )
    return coordinator


async def _background(
    stack: contextlib.AsyncExitStack,
    work: Coroutine[object, object, None],
    what: str,
    stop: asyncio.Event | None = None,
) -> None:
    """Run ``work`` beside the writer; ``stack`` stops it (``stop`` set, then cancelled)."""
    task = asyncio.create_task(work, name=what)

    async def end() -> None:
        if stop is not None:
            stop.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), timeout=5.0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def died(done: asyncio.Task[None]) -> None:
        if not done.cancelled() and done.exception() is not None:
            log.error("%s stopped", what, exc_info=done.exception())

    task.add_done_callback(died)
    stack.push_async_callback(end)
