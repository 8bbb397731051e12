"""The writer's run loop against an in-memory broker: the orders of events a real broker
cannot be made to produce on cue (issue 17: rebalance during a flush, revocation while
uploading, a storage outage, the memory cap, a failing dead-letter topic).

Each test ends with the dataset check of the integration tests, on the in-memory store: every
produced chunk is in the shards exactly once and every partition is committed to its end.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow.parquet as pq
import pytest
from aiokafka import TopicPartition
from fake_broker import TOPIC, FakeBroker, FakeConsumer
from writer_fakes import FakeClock, FakeDeadLetters, ScriptedStore

from robolake.episode.chunks import decode_chunk
from robolake.episode.records import chunk_record, complete_record, manifest_record
from robolake.episode.synthetic import SyntheticEpisode, SyntheticSpec, generate_episode
from robolake.writer.consumer import Writer
from robolake.writer.metrics import WriterMetrics
from robolake.writer.settings import MIB, WriterSettings

ChunkKey = tuple[str, str, int]


@dataclass
class Produced:
    rows: Counter[ChunkKey] = field(default_factory=Counter)


def produce(broker: FakeBroker, partition: int, seed: int, produced: Produced) -> SyntheticEpisode:
    """Manifest, every chunk, completion of one small episode into ``partition``."""
    episode = generate_episode(
        SyntheticSpec(seed=seed, duration_s=1.0, cameras=("head",), frame_pool=2)
    )
    manifest = episode.manifest
    value = episode.manifest_bytes()
    broker.produce(partition, manifest_record(manifest, value), value)
    chunks = episode.chunks(64 * 1024)
    for stream, encoded in chunks.items():
        for seq, data in enumerate(encoded):
            broker.produce(partition, chunk_record(manifest, stream, seq, data), data)
            produced.rows[(manifest.episode_id, stream, seq)] = decode_chunk(data).num_rows
    completion = json.dumps(episode.completion_document(chunks)).encode()
    broker.produce(partition, complete_record(manifest, completion), completion)
    return episode


def stored_rows(store: ScriptedStore) -> Counter[ChunkKey]:
    rows: Counter[ChunkKey] = Counter()
    for key, data in store.objects.items():
        if key.startswith("shards/"):
            table = pq.read_table(io.BytesIO(data), columns=["episode_id", "stream", "seq"])
            rows.update(
                zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True)
            )
    return rows


def settings(**overrides: object) -> WriterSettings:
    base: dict[str, object] = {
        "topic": TOPIC,
        "dead_letter_topic": "dlq",
        "group_id": "g",
        "flush_bytes": 256 * 1024,
        "flush_age_s": 0.5,
        "max_buffer_bytes": 64 * MIB,
        "tick_s": 0.01,
        "max_backoff_s": 1.0,
        "stored_bytes_interval_s": 0,
        "metrics_port": None,
    }
    return WriterSettings(**{**base, **overrides})  # type: ignore[arg-type]


@dataclass
class Member:
    writer: Writer
    consumer: FakeConsumer
    dead_letters: FakeDeadLetters
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.writer.run(self.stop))

    async def shut(self) -> None:
        self.stop.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, 60)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        sample = self.writer.metrics.registry.get_sample_value(name, labels or {})
        assert sample is not None, f"metric {name}{labels or ''} was never set"
        return sample


def member(
    broker: FakeBroker,
    store: ScriptedStore,
    clock: FakeClock,
    *,
    on_poll: Callable[[], None] | None = None,
    **overrides: object,
) -> Member:
    consumer = FakeConsumer(broker, clock, on_poll=on_poll)
    dead_letters = FakeDeadLetters()
    writer = Writer(
        settings(**overrides),
        "in-memory",
        store=store,
        dead_letters=dead_letters,
        metrics=WriterMetrics(),
        clock=clock,
        monotonic=clock,
        consumer=consumer,
    )
    return Member(writer, consumer, dead_letters)


async def until(condition: Callable[[], bool], what: str, *, timeout: float = 30) -> None:
    """Wait for a condition the loop reaches by itself; the timeout only bounds a bug."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)
    assert condition(), what


def all_committed(broker: FakeBroker) -> bool:
    return all(broker.committed.get(p, 0) == broker.end(p) for p in range(broker.partitions))


async def test_rebalance_while_a_flush_uploads_hands_the_partition_over_committed() -> None:
    broker, store, clock, produced = FakeBroker(), ScriptedStore(), FakeClock(), Produced()
    for seed, partition in ((1, 0), (2, 1)):
        produce(broker, partition, seed, produced)
    store.gate = threading.Event()
    a = member(broker, store, clock)
    broker.assign(a.consumer, [0, 1])
    a.start()
    await until(store.held.is_set, "a shard upload held at the gate")
    b = member(broker, store, clock)
    broker.assign(a.consumer, [1])  # partition 0 moves: A is revoked while its flush uploads
    broker.assign(b.consumer, [0])
    b.start()
    await until(lambda: a.consumer.pending is None, "A's revocation started")
    store.gate.set()  # the upload completes inside the revocation callback's hand-over
    await until(lambda: all_committed(broker), "both partitions committed to their ends")
    await a.shut()
    await b.shut()
    assert stored_rows(store) == produced.rows
    handed_over = max(offset for p, offset in a.consumer.commits if p == 0)
    assert handed_over > 0, "A committed nothing of partition 0 before giving it up"
    assert b.consumer.assigned_at[0] == handed_over  # B started where A's hand-over ended


async def test_a_member_that_lost_its_assignment_before_the_callback_keeps_running() -> None:
    """aiokafka drops a kicked member's assignment (a writer frozen past its session, thawed)
    before the revocation callback runs; the loop must not ask about those partitions then
    (seen: ``highwater`` raised and the writer died, an elected-committer zombie test)."""
    broker, store, clock, produced = FakeBroker(), ScriptedStore(), FakeClock(), Produced()
    produce(broker, 0, 1, produced)
    a = member(broker, store, clock)
    broker.assign(a.consumer, [0, 1])
    a.start()
    await until(lambda: len(a.writer.partitions) == 2, "both partitions recovered")
    polls = a.consumer.polls
    a.consumer.assigned.clear()  # kicked: no callback yet
    await until(lambda: a.consumer.polls > polls + 5, "the loop polling on")
    assert a.task is not None
    assert not a.task.done(), a.task.exception() if a.task.done() else None
    broker.assign(a.consumer, [0, 1])  # rejoined: revoked, then assigned again
    await until(lambda: all_committed(broker), "the partitions committed after the rejoin")
    await a.shut()
    assert stored_rows(store) == produced.rows


async def test_a_member_revoked_while_uploading_loses_its_commit_and_the_next_owner_replays() -> (
    None
):
    """The group moved on without waiting (a frozen member): A's commit is refused, A drops
    the partition's state, B deletes A's uncommitted objects and replays: exactly once."""
    broker, store, clock, produced = (
        FakeBroker(partitions=1),
        ScriptedStore(),
        FakeClock(),
        Produced(),
    )
    produce(broker, 0, 3, produced)
    store.gate = threading.Event()
    a = member(broker, store, clock)
    broker.assign(a.consumer, [0])
    a.start()
    await until(store.held.is_set, "A's flush held at the gate")
    b = member(broker, store, clock)
    broker.steal(b.consumer, 0)  # A is not told; its commit will be refused
    store.gate.set()
    lost = TopicPartition(TOPIC, 0)
    await until(
        lambda: (
            lost not in a.writer.partitions
            and not a.writer._inflight
            and lost not in a.consumer.assigned
        ),  # it rejoined and learned it was moved
        "A gave the partition up",
    )
    assert broker.committed.get(0) is None
    await a.shut()
    broker.assign(b.consumer, [0])
    b.start()
    await until(lambda: all_committed(broker), "B committed the partition to its end")
    await b.shut()
    assert stored_rows(store) == produced.rows


async def test_a_storage_outage_pauses_every_partition_and_resumes_by_itself() -> None:
    broker, store, clock, produced = FakeBroker(), ScriptedStore(), FakeClock(), Produced()
    for seed, partition in ((4, 0), (5, 1)):
        produce(broker, partition, seed, produced)
    store.fail_puts = 6
    committed_during_outage: list[dict[int, int]] = []
    store.on_fail = lambda: committed_during_outage.append(dict(broker.committed))
    paused_seen: list[bool] = []
    a = member(broker, store, clock)
    a.consumer.on_poll = lambda: paused_seen.append(
        bool(a.consumer.assigned) and a.consumer.paused == a.consumer.assigned
    )
    broker.assign(a.consumer, [0, 1])
    a.start()
    await until(lambda: store.failed == 6, "six refused writes")
    assert committed_during_outage == [{}] * 6  # nothing committed while storage refuses
    await until(lambda: all_committed(broker), "everything committed after the outage")
    await a.shut()
    assert any(paused_seen), "consumption was never paused during the outage"
    assert not a.consumer.paused  # resumed
    assert a.value("robolake_writer_flush_failures_total") >= 1
    assert stored_rows(store) == produced.rows


async def test_the_memory_cap_holds_consumption_back_while_every_buffer_is_flushing() -> None:
    broker, store, clock, produced = FakeBroker(), ScriptedStore(), FakeClock(), Produced()
    for seed in range(30, 36):
        produce(broker, seed % 2, seed, produced)
    store.gate = threading.Event()
    held: list[int] = []
    a = member(broker, store, clock, max_buffer_bytes=2 * MIB, flush_bytes=MIB)
    a.consumer.on_poll = lambda: held.append(a.writer._held_bytes())
    broker.assign(a.consumer, [0, 1])
    a.start()
    await until(store.held.is_set, "a flush held at the gate")
    polls = a.consumer.polls
    await until(
        lambda: len(a.writer._inflight) == 2 or a.consumer.polls > polls + 500,
        "both partitions flushing or polling on",
    )
    before = a.consumer.polls
    await asyncio.sleep(0.2)
    limit = a.writer.settings.memory_limit_bytes
    assert a.writer._held_bytes() >= limit, "the workload never reached the memory limit"
    assert a.consumer.polls == before, "the loop kept polling above its memory limit"
    store.gate.set()
    await until(lambda: all_committed(broker), "everything committed")
    await a.shut()
    assert max(held) <= limit + a.writer.settings.fetch_bytes + 2 * MIB, (max(held), limit)
    assert stored_rows(store) == produced.rows


async def test_a_failing_dead_letter_topic_holds_only_the_commit_past_its_record() -> None:
    broker, store, clock, produced = FakeBroker(), ScriptedStore(), FakeClock(), Produced()
    produce(broker, 0, 12, produced)
    poison = broker.produce(0, None, b"\x00 not arrow", key=b"x", headers=[("kind", b"chunk")])
    produce(broker, 0, 13, produced)  # after the poison record: waits for its dead letter
    produce(broker, 1, 14, produced)  # another partition: must not wait at all
    a = member(broker, store, clock)
    a.dead_letters.gate = asyncio.Event()
    a.dead_letters.fail = 2
    broker.assign(a.consumer, [0, 1])
    a.start()
    await until(lambda: broker.committed.get(1) == broker.end(1), "partition 1 committed")
    assert broker.committed.get(0, 0) <= poison, "committed past a dead letter not stored"
    a.dead_letters.gate.set()  # the topic answers, twice with an error, then it takes them
    await until(lambda: all_committed(broker), "partition 0 committed after the dead letter")
    await a.shut()
    assert [d.record.offset for d in a.dead_letters.sent] == [poison]
    assert a.dead_letters.attempts >= 3
    assert a.value("robolake_writer_dead_letters_total", {"reason": "record_invalid"}) == 1
    assert stored_rows(store) == produced.rows


@pytest.mark.parametrize("stops", [1, 2])
async def test_restarts_on_the_same_broker_resume_with_the_committed_state(stops: int) -> None:
    """Clean stops between productions: each new member resumes where the last committed."""
    broker, store, clock, produced = FakeBroker(), ScriptedStore(), FakeClock(), Produced()
    seed = 20
    for _ in range(stops + 1):
        produce(broker, seed % 2, seed, produced)
        seed += 1
        m = member(broker, store, clock)
        broker.assign(m.consumer, [0, 1])
        m.start()
        await until(lambda: all_committed(broker), "committed to the end")
        await m.shut()
    assert stored_rows(store) == produced.rows
