"""The elected committer's protocol without Kafka or a catalog: requests and answers pass through
in-memory channels, a fake committer decides what a commit does.

- a request carries the compare-and-set and every file's footer; both messages round-trip;
- an answer resolves the requester's future as the committer's outcome would (landed, already,
  fenced -> Fenced, unavailable -> CatalogUnavailable), and no answer in time fails it with
  CatalogUnavailable (the flush is retried);
- other groups' messages, unreadable ones and requests older than the age limit are skipped;
- the request topic's offset is committed only below requests answered, so a successor
  committer answers whatever this one had not.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from robolake.lake.errors import CatalogUnavailable, Fenced
from robolake.writer.committer import Landed, StagedFile
from robolake.writer.control import CommitRequest, CommitResult, ControlMessageError
from robolake.writer.coordinator import CommitClient, CommitCoordinator, serve_requests

GROUP = "writers"


def _footer(rows: int) -> pq.FileMetaData:
    sink = io.BytesIO()
    pq.write_table(pa.table({"x": list(range(rows)), "y": ["a"] * rows}), sink)
    return pq.read_metadata(pa.BufferReader(sink.getvalue()))


def _request(request_id: str = "r1", group: str = GROUP, **changes: Any) -> CommitRequest:
    fields: dict[str, Any] = {
        "group": group,
        "request_id": request_id,
        "table": "imu_v1",
        "topic": "chunks",
        "partition": 3,
        "expected": 100,
        "next_offset": 150,
        "checkpoint": None,
        "files": (StagedFile("shards/imu/a.parquet", _footer(7), 1234),),
    }
    fields.update(changes)
    return CommitRequest(**fields)


def test_a_request_round_trips_with_its_footers() -> None:
    request = _request(checkpoint="_writer/checkpoints/x.json", expected=None)
    back = CommitRequest.from_bytes(request.to_bytes())
    assert (back.group, back.request_id, back.table, back.topic, back.partition) == (
        GROUP,
        "r1",
        "imu_v1",
        "chunks",
        3,
    )
    assert (back.expected, back.next_offset, back.checkpoint) == (None, 150, request.checkpoint)
    (file,) = back.files
    assert (file.key, file.size) == ("shards/imu/a.parquet", 1234)
    assert file.footer.num_rows == 7
    assert file.footer.schema.to_arrow_schema().names == ["x", "y"]


def test_unreadable_messages_are_refused_by_name() -> None:
    with pytest.raises(ControlMessageError, match="version"):
        CommitRequest.from_bytes(b'{"v": 99}')
    with pytest.raises(ControlMessageError, match="not a control message"):
        CommitResult.from_bytes(b"\xff\x00")
    with pytest.raises(ControlMessageError, match="unknown status"):
        CommitResult.from_bytes(b'{"v":1,"group":"g","id":"i","status":"maybe"}')


@dataclass
class FakeCommitter:
    """Decides each commit's outcome; ``hold`` keeps futures pending until released."""

    outcome: Landed | BaseException = field(default_factory=lambda: Landed(False, 0, 1))
    hold: bool = False
    seen: list[tuple[str, int, int | None, int, tuple[str, ...]]] = field(default_factory=list)
    held: list[Future[Landed]] = field(default_factory=list)

    def make(self, tables: Any, name: str) -> FakeCommitter:
        return self

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
        self.seen.append((topic, partition, expected, next_offset, tuple(f.key for f in files)))
        future: Future[Landed] = Future()
        if self.hold:
            self.held.append(future)
        else:
            self.release(future)
        return future

    def release(self, future: Future[Landed]) -> None:
        if isinstance(self.outcome, BaseException):
            future.set_exception(self.outcome)
        else:
            future.set_result(self.outcome)


def _wired(
    committer: FakeCommitter, *, timeout_s: float = 5.0, now: float = 1000.0
) -> tuple[CommitClient, CommitCoordinator]:
    """A client whose requests go straight to a coordinator whose answers come straight back."""
    coordinator = CommitCoordinator(GROUP, tables=Any, committer=committer.make, clock=lambda: now)
    client: CommitClient

    async def send(key: bytes, value: bytes) -> None:
        answer = coordinator.handle(key, value, timestamp_s=now)
        if answer is not None:
            answer.add_done_callback(
                lambda done: loop.call_soon_threadsafe(
                    client.deliver, key, done.result().to_bytes()
                )
            )

    loop = asyncio.get_running_loop()
    client = CommitClient(GROUP, send, loop, timeout_s=timeout_s)
    return client, coordinator


async def _submit(client: CommitClient, **kwargs: Any) -> Landed:
    """Submit as the ledger does (from a thread) and wait for the outcome."""
    committer = client.committer(tables=Any, name="imu_v1")
    future = await asyncio.to_thread(
        committer.submit,
        topic="chunks",
        partition=kwargs.get("partition", 3),
        expected=100,
        next_offset=150,
        checkpoint=None,
        files=(StagedFile("a.parquet", _footer(2), 10),),
    )
    return await asyncio.wrap_future(future)


async def test_a_commit_lands_through_the_elected_committer() -> None:
    fake = FakeCommitter(outcome=Landed(False, conflicts=2, batch=3))
    client, coordinator = _wired(fake)
    landed = await _submit(client)
    assert landed == Landed(already=False, conflicts=2, batch=3)
    assert fake.seen == [("chunks", 3, 100, 150, ("a.parquet",))]
    assert coordinator.answered == {"landed": 1}
    assert client.waiting == 0


async def test_a_repeated_request_is_answered_already() -> None:
    client, _ = _wired(FakeCommitter(outcome=Landed(True, 0, 1)))
    assert (await _submit(client)).already


async def test_a_refusal_fences_the_requester() -> None:
    client, coordinator = _wired(FakeCommitter(outcome=Fenced("imu_v1: chunks[3] records 170")))
    with pytest.raises(Fenced, match="records 170"):
        await _submit(client)
    assert coordinator.answered == {"fenced": 1}


async def test_a_catalog_outage_is_an_outage_for_the_requester() -> None:
    client, _ = _wired(FakeCommitter(outcome=CatalogUnavailable("catalog down")))
    with pytest.raises(CatalogUnavailable, match="catalog down"):
        await _submit(client)


async def test_an_unexpected_failure_is_answered_not_swallowed() -> None:
    client, coordinator = _wired(FakeCommitter(outcome=RuntimeError("bug")))
    with pytest.raises(CatalogUnavailable, match="RuntimeError: bug"):
        await _submit(client)
    assert coordinator.answered == {"unavailable": 1}


async def test_no_answer_in_time_fails_the_request_so_it_is_retried() -> None:
    client, _ = _wired(FakeCommitter(hold=True), timeout_s=0.05)
    with pytest.raises(CatalogUnavailable, match="no answer from the group's elected committer"):
        await _submit(client)
    assert client.waiting == 0


async def test_a_failed_send_fails_the_request() -> None:
    async def send(key: bytes, value: bytes) -> None:
        raise ConnectionError("broker gone")

    client = CommitClient(GROUP, send, asyncio.get_running_loop())
    with pytest.raises(CatalogUnavailable, match="broker gone"):
        await _submit(client)


async def test_answers_for_others_are_ignored() -> None:
    client = CommitClient(GROUP, _never, asyncio.get_running_loop(), timeout_s=5)
    committer = client.committer(tables=Any, name="t")
    future = committer.submit(
        topic="c", partition=0, expected=None, next_offset=1, checkpoint=None, files=()
    )
    await asyncio.sleep(0)
    (request_id,) = list(client._pending)
    other_group = CommitResult("others", request_id, "landed").to_bytes()
    client.deliver(b"others", other_group)
    client.deliver(None, other_group)  # keyless: the group inside decides
    client.deliver(GROUP.encode(), CommitResult(GROUP, "someone-else", "landed").to_bytes())
    client.deliver(GROUP.encode(), b"garbage")
    assert not future.done()
    client.deliver(GROUP.encode(), CommitResult(GROUP, request_id, "already").to_bytes())
    assert future.result(timeout=1).already


async def _never(key: bytes, value: bytes) -> None:
    return None


def test_the_coordinator_skips_other_groups_garbage_and_stale_requests() -> None:
    fake = FakeCommitter()
    coordinator = CommitCoordinator(
        GROUP, tables=Any, committer=fake.make, clock=lambda: 10_000.0, max_age_s=600
    )
    fresh = _request().to_bytes()
    assert coordinator.handle(b"others", _request(group="others").to_bytes(), 10_000.0) is None
    assert coordinator.handle(None, _request(group="others").to_bytes(), 10_000.0) is None
    assert coordinator.handle(GROUP.encode(), b"{}", 10_000.0) is None
    assert coordinator.handle(GROUP.encode(), fresh, 10_000.0 - 601) is None
    assert fake.seen == []
    answer = coordinator.handle(GROUP.encode(), fresh, 10_000.0 - 599)
    assert answer is not None
    assert answer.result(timeout=1).status == "landed"
    assert len(fake.seen) == 1


@dataclass
class Record:
    offset: int
    value: bytes | None
    key: bytes | None = GROUP.encode()
    timestamp: int = 1_000_000  # ms


@dataclass
class FakeRequests:
    """The request topic's one partition, as the elected committer's consumer sees it."""

    batches: list[list[Record]]
    commits: list[int] = field(default_factory=list)

    async def getmany(
        self, *, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[object, list[Any]]:
        await asyncio.sleep(0.01)
        return {"p0": self.batches.pop(0)} if self.batches else {}

    async def commit(self, offsets: dict[object, int]) -> None:
        self.commits.append(offsets["p0"])


async def test_the_request_offset_is_committed_only_below_unanswered_requests() -> None:
    fake = FakeCommitter(hold=True)
    coordinator = CommitCoordinator(GROUP, tables=Any, committer=fake.make, clock=lambda: 1000.0)
    requests = FakeRequests(
        [
            [
                Record(10, _request("a", partition=1).to_bytes()),
                Record(11, b"not for anyone"),  # skipped, but committed past once before it is
                Record(12, _request("b", partition=2).to_bytes()),
            ]
        ]
    )
    answers: list[CommitResult] = []

    async def answer(key: bytes, value: bytes) -> None:
        answers.append(CommitResult.from_bytes(value))

    stop = asyncio.Event()
    task = asyncio.create_task(serve_requests(requests, coordinator, answer, stop))
    await _until(lambda: len(fake.held) == 2)
    await asyncio.sleep(0.05)
    assert requests.commits == []
    assert answers == []
    fake.release(fake.held[1])  # b answered first: nothing can be committed yet (a is open)
    await _until(lambda: len(answers) == 1)
    await asyncio.sleep(0.05)
    assert [a.request_id for a in answers] == ["b"]
    assert requests.commits == []
    fake.release(fake.held[0])
    await _until(lambda: requests.commits[-1:] == [13])
    assert sorted(a.request_id for a in answers) == ["a", "b"]
    stop.set()
    await asyncio.wait_for(task, timeout=5)


async def _until(condition: Any, timeout: float = 5.0) -> None:
    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), timeout)


async def test_requests_are_decoded_while_the_writers_commits_hold_every_default_thread() -> None:
    # The writer's ledger commits wait for their answers in asyncio's default pool; the
    # committer's decoding must not need a thread of that pool, or a group's flushes arriving
    # together starve it until every one times out.
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
    answered = threading.Event()
    waiting = loop.run_in_executor(None, answered.wait, 5.0)  # the pool's one thread, held
    fake = FakeCommitter()
    coordinator = CommitCoordinator(GROUP, tables=Any, committer=fake.make, clock=lambda: 1000.0)
    requests = FakeRequests([[Record(0, _request("a").to_bytes())]])

    async def answer(key: bytes, value: bytes) -> None:
        answered.set()

    stop = asyncio.Event()
    task = asyncio.create_task(serve_requests(requests, coordinator, answer, stop))
    assert await asyncio.wait_for(waiting, timeout=10) is True  # answered, not timed out
    stop.set()
    await asyncio.wait_for(task, timeout=5)
