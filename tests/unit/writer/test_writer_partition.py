"""The partition writer's rules, with an injected clock and in-memory records."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import pyarrow.parquet as pq
import pytest
from writer_fakes import FakeClock, MemoryStore, Record, record

from robolake.episode.records import chunk_record, complete_record, manifest_record
from robolake.episode.synthetic import SyntheticEpisode, SyntheticSpec, generate_episode
from robolake.writer.batcher import FlushPolicy, PartitionBuffer
from robolake.writer.checkpoints import Checkpoint, recover
from robolake.writer.index import EpisodeState
from robolake.writer.partition import PartitionWriter, PreparedFlush


@pytest.fixture(scope="module")
def episode() -> SyntheticEpisode:
    return generate_episode(SyntheticSpec(seed=3, duration_s=1.0, cameras=("head",), frame_pool=2))


def writer(clock: FakeClock, **kwargs: object) -> PartitionWriter:
    policy = FlushPolicy(flush_bytes=10 * 2**20, flush_age_s=5.0)
    return PartitionWriter("chunks", 0, policy=policy, clock=clock, **kwargs)  # type: ignore[arg-type]


def feed(
    w: PartitionWriter,
    episode: SyntheticEpisode,
    *,
    complete: bool = True,
    start: int = 0,
    organisation: str | None = None,
    later_organisation: str | None = None,
) -> int:
    """Feed an episode's records; ``organisation`` stamps the manifest record as the collector
    does, ``later_organisation`` its chunks and completion (None: an older collector's)."""
    offset = start
    manifest = episode.manifest
    value = episode.manifest_bytes()
    meta = replace(manifest_record(manifest, value), organisation=organisation)
    assert w.accept(record(offset, meta, value)).outcome == "stored"
    chunks = episode.chunks(64 * 1024)
    for stream, seq, data in episode.iter_chunks(64 * 1024):
        offset += 1
        meta = replace(chunk_record(manifest, stream, seq, data), organisation=later_organisation)
        verdict = w.accept(record(offset, meta, data))
        assert verdict.outcome == "stored", verdict
    if complete:
        value = json.dumps(episode.completion_document(chunks)).encode()
        offset += 1
        meta = replace(complete_record(manifest, value), organisation=later_organisation)
        w.accept(record(offset, meta, value))
    return offset


def test_age_limit_fires_without_new_records_and_size_target_first() -> None:
    clock = FakeClock()
    policy = FlushPolicy(flush_bytes=100, flush_age_s=5.0)
    buffer = PartitionBuffer()
    assert policy.due(buffer, clock()) is None
    buffer.note(7, clock())
    assert policy.due(buffer, clock() + 4.9) is None
    assert policy.due(buffer, clock() + 5.0) == "age"
    buffer.nbytes = 100
    assert policy.due(buffer, clock()) == "size"


def test_complete_episode_flushes_to_sorted_shards_and_one_index_row(
    episode: SyntheticEpisode,
) -> None:
    clock = FakeClock()
    w = writer(clock)
    last = feed(w, episode)
    assert w.due(clock()) is None
    clock.now += 5
    assert w.due(clock()) == "age"
    flush = w.prepare("age")
    assert flush is not None
    assert flush.commit_to == last + 1
    kinds = sorted(f.kind for f in flush.files)
    assert kinds.count("index") == 1
    assert "image.v1" in kinds
    assert flush.index_complete == 1
    index = pq.read_table(io.BytesIO(next(f.data for f in flush.files if f.kind == "index")))
    assert index.column("complete").to_pylist() == [True]
    image = pq.read_table(io.BytesIO(next(f.data for f in flush.files if f.kind == "image.v1")))
    t = image.column("t_ns").to_pylist()
    assert t == sorted(t)
    w.finished(flush)
    assert w.committed == last + 1
    assert w.buffer.empty
    assert w.due(clock() + 100) is None


def test_retries_are_dropped_and_conflicts_dead_lettered(episode: SyntheticEpisode) -> None:
    clock = FakeClock()
    w = writer(clock)
    last = feed(w, episode, complete=False)
    manifest = episode.manifest
    images = episode.chunks(64 * 1024)["cam_head"]
    stream, seq, data, other = "cam_head", 0, images[0], images[1]
    again = w.accept(record(last + 1, chunk_record(manifest, stream, seq, data), data))
    assert again.outcome == "duplicate"
    conflict = w.accept(record(last + 2, chunk_record(manifest, stream, seq, other), other))
    assert conflict.dead_letter is not None
    assert conflict.dead_letter.reason == "record_invalid"
    assert conflict.dead_letter.message.startswith("conflicting_duplicate")
    poison = w.accept(Record(last + 3, b"x", b"\x00", [("kind", b"chunk")]))
    assert poison.outcome == "dead_letter"
    assert w.buffer.last_offset == last + 3  # their offsets are committed with the flush
    assert w.episodes[manifest.episode_id].conflicting_duplicate


def test_never_completed_episode_is_indexed_as_incomplete_even_when_idle(
    episode: SyntheticEpisode,
) -> None:
    clock = FakeClock()
    w = writer(clock, incomplete_after_s=60.0)
    feed(w, episode, complete=False)
    clock.now += 5
    flush = w.prepare("age")
    assert flush is not None
    assert flush.index_complete + flush.index_incomplete == 0
    w.finished(flush)
    clock.now += 61
    assert w.due(clock()) == "timeout"
    index_only = w.prepare("timeout")
    assert index_only is not None
    assert index_only.commit_to is None  # nothing to commit: an empty offset range
    assert index_only.index_incomplete == 1
    assert [f.kind for f in index_only.files] == ["index"]


def test_recovery_deletes_uncommitted_objects_and_resumes_committed_state(
    episode: SyntheticEpisode,
) -> None:
    clock = FakeClock()
    store = MemoryStore()
    w = writer(clock)
    last = feed(w, episode)
    flush = w.prepare("age")
    assert flush is not None
    store.put(flush.checkpoint.key, flush.checkpoint.to_bytes(), "application/json")
    for file in flush.files[:1]:  # crashed after the first upload, before the commit
        store.put(file.key, file.data, "")
    crashed = recover(store, "chunks", 0, committed=None)
    assert crashed.episodes == {}
    assert store.objects == {}
    # The same flush, completed and committed: its state is what the next owner starts from.
    for file in flush.files:
        store.put(file.key, file.data, "")
    store.put(flush.checkpoint.key, flush.checkpoint.to_bytes(), "application/json")
    resumed = recover(store, "chunks", 0, committed=last + 1)
    assert set(resumed.episodes) == {episode.manifest.episode_id}
    assert len(store.objects) == len(flush.files) + 1
    state = resumed.episodes[episode.manifest.episode_id]
    stream, seq, data = next(episode.iter_chunks(64 * 1024))
    assert (
        state.ledger.check(stream, seq, chunk_record(episode.manifest, stream, seq, data).checksum)
        == "duplicate"
    )
    assert Checkpoint.from_bytes(flush.checkpoint.to_bytes(), where="x") == flush.checkpoint


class Kafka:
    """The committed offset of one partition, as the run loop would leave it."""

    def __init__(self) -> None:
        self.committed: int | None = None


def store_flush(
    store: MemoryStore, kafka: Kafka, w: PartitionWriter, reason: str, *, crash_after: int = -1
) -> bool:
    """The run loop's order for one flush: checkpoint, objects, commit, drop the previous.

    ``crash_after`` >= 0 stops after that many objects were uploaded (the process died; all of
    them: before the commit);
    returns whether the flush went all the way.
    """
    flush = w.prepare(reason)  # type: ignore[arg-type]
    assert flush is not None
    store.put(flush.checkpoint.key, flush.checkpoint.to_bytes(), "application/json")
    for done, file in enumerate(flush.files):
        if done == crash_after:
            return False
        store.put(file.key, file.data, "")
    if crash_after == len(flush.files):
        return False
    if flush.commit_to is not None:
        kafka.committed = flush.commit_to
    previous = w.last_checkpoint
    w.finished(flush)
    if previous is not None and previous != flush.checkpoint.key:
        store.delete(previous)
    return True


def restart(
    store: MemoryStore, kafka: Kafka, clock: FakeClock, **kwargs: object
) -> PartitionWriter:
    """A new owner of the partition: recovery, then a writer with the recovered state."""
    recovered = recover(store, "chunks", 0, committed=kafka.committed)
    w = writer(clock, episodes=recovered.episodes, committed=kafka.committed, **kwargs)
    w.flush = recovered.flush
    w.last_checkpoint = recovered.resumed_from
    return w


def index_rows(store: MemoryStore) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for key, data in sorted(store.objects.items()):
        if key.startswith("index/"):
            rows += pq.read_table(io.BytesIO(data)).to_pylist()
    return rows


def test_restart_after_an_index_only_timeout_flush_keeps_state_and_index_row(
    episode: SyntheticEpisode,
) -> None:
    """Defect 1 of issue 15: the index-only flush's checkpoint was taken for uncommitted."""
    clock, store, kafka = FakeClock(), MemoryStore(), Kafka()
    w = writer(clock, incomplete_after_s=120.0)
    last = feed(w, episode, complete=False)
    clock.now += 5
    assert store_flush(store, kafka, w, "age")
    assert kafka.committed == last + 1
    clock.now += 121
    assert w.due(clock()) == "timeout"
    assert store_flush(store, kafka, w, "timeout")
    assert kafka.committed == last + 1  # nothing new to commit
    assert [row["episode_id"] for row in index_rows(store)] == [episode.manifest.episode_id]

    w = restart(store, kafka, clock, incomplete_after_s=120.0)
    assert set(w.episodes) == {episode.manifest.episode_id}
    assert [row["episode_id"] for row in index_rows(store)] == [episode.manifest.episode_id]
    stream, seq, data = next(episode.iter_chunks(64 * 1024))
    again = record(last + 1, chunk_record(episode.manifest, stream, seq, data), data)
    assert w.accept(again).outcome == "duplicate"  # the retry is not stored a second time
    # A second restart, with the late retry flushed at the index-only position, changes nothing.
    clock.now += 5
    assert store_flush(store, kafka, w, "age")
    w = restart(store, kafka, clock, incomplete_after_s=120.0)
    assert set(w.episodes) == {episode.manifest.episode_id}
    assert len(index_rows(store)) == 1


def test_crash_between_index_only_checkpoint_and_its_upload_is_redone(
    episode: SyntheticEpisode,
) -> None:
    clock, store, kafka = FakeClock(), MemoryStore(), Kafka()
    w = writer(clock, incomplete_after_s=120.0)
    feed(w, episode, complete=False)
    clock.now += 5
    assert store_flush(store, kafka, w, "age")
    clock.now += 121
    assert not store_flush(store, kafka, w, "timeout", crash_after=0)
    assert index_rows(store) == []
    w = restart(store, kafka, clock, incomplete_after_s=120.0)
    rows = index_rows(store)
    assert [(row["episode_id"], row["complete"]) for row in rows] == [
        (episode.manifest.episode_id, False)
    ]
    assert w.due(clock()) is None  # indexed: no second timeout row


def test_uncommitted_flush_at_an_index_only_position_keeps_the_index_only_rows(
    episode: SyntheticEpisode,
) -> None:
    clock, store, kafka = FakeClock(), MemoryStore(), Kafka()
    w = writer(clock, incomplete_after_s=120.0)
    last = feed(w, episode, complete=False)
    clock.now += 5
    assert store_flush(store, kafka, w, "age")
    clock.now += 121
    assert store_flush(store, kafka, w, "timeout")
    # A late completion arrives; its flush starts at the same offset and dies before the commit,
    # after overwriting the index file at that position.
    value = json.dumps(episode.completion_document(episode.chunks(64 * 1024))).encode()
    w.accept(record(last + 1, complete_record(episode.manifest, value), value))
    clock.now += 5
    assert not store_flush(store, kafka, w, "age", crash_after=1)
    assert [row["complete"] for row in index_rows(store)] == [True]
    w = restart(store, kafka, clock, incomplete_after_s=120.0)
    assert [row["complete"] for row in index_rows(store)] == [False]  # the committed row
    assert w.episodes[episode.manifest.episode_id].declared is None  # replayed next
    w.accept(record(last + 1, complete_record(episode.manifest, value), value))
    clock.now += 5
    assert store_flush(store, kafka, w, "age")
    assert [row["complete"] for row in index_rows(store)] == [True]
    assert kafka.committed == last + 2


def test_an_index_row_outlives_the_dedup_window_while_its_position_is_current() -> None:
    """An idle partition: every timeout row at one offset rewrites that offset's index file."""
    clock, store, kafka = FakeClock(), MemoryStore(), Kafka()
    w = writer(clock, incomplete_after_s=1000.0, dedup_window_s=100.0)
    episodes = [
        generate_episode(SyntheticSpec(seed=seed, duration_s=0.3, cameras=())) for seed in (5, 6, 7)
    ]
    offset = -1
    for episode in episodes:  # 300 s apart, so they time out 300 s apart
        offset = feed(w, episode, complete=False, start=offset + 1)
        clock.now += 300
    assert store_flush(store, kafka, w, "age")
    for _ in episodes:
        clock.now += 300
        assert w.due(clock()) == "timeout"
        assert store_flush(store, kafka, w, "timeout")
    indexed = sorted(row["episode_id"] for row in index_rows(store))
    assert indexed == sorted(e.manifest.episode_id for e in episodes)


def test_checkpointed_state_from_before_ownership_still_loads_and_indexes() -> None:
    """A checkpoint written before episode ids carried an owner tag must not stop the writer."""
    from robolake.episode.ids import uuid7
    from robolake.writer.index import EpisodeState

    old = generate_episode(SyntheticSpec(seed=8, duration_s=0.3, cameras=()))
    document = dict(old.manifest_document, episode_id=uuid7(1_767_600_000_000, bytes(10)))
    state = EpisodeState(
        document["episode_id"], document["capture_point_id"], document["device_id"]
    )
    state.manifest_json = json.dumps(document)
    restored = EpisodeState.from_json(json.loads(json.dumps(state.to_json())))
    assert restored.index_row(1)["episode_id"] == document["episode_id"]


def _index_of(flush: PreparedFlush) -> list[dict[str, object]]:
    data = next(f.data for f in flush.files if f.kind == "index")
    rows: list[dict[str, object]] = pq.read_table(io.BytesIO(data)).to_pylist()
    return rows


def test_index_row_carries_the_organisation_stamped_on_the_manifest_record() -> None:
    """Provenance is the manifest record's: chunks stamped otherwise (a device moved to another
    organisation mid-upload) do not move the episode, and an older collector's episode gets a
    null organisation, not a guess."""
    stamped, unstamped = (
        generate_episode(SyntheticSpec(seed=seed, duration_s=0.3, cameras=())) for seed in (11, 12)
    )
    clock = FakeClock()
    w = writer(clock)
    last = feed(w, stamped, organisation="acme", later_organisation="globex")
    feed(w, unstamped, start=last + 1)
    clock.now += 5
    flush = w.prepare("age")
    assert flush is not None
    by_id = {row["episode_id"]: row for row in _index_of(flush)}
    assert by_id[stamped.manifest.episode_id]["organisation"] == "acme"
    assert by_id[unstamped.manifest.episode_id]["organisation"] is None
    column = pq.read_schema(
        io.BytesIO(next(f.data for f in flush.files if f.kind == "index"))
    ).field("organisation")
    assert (str(column.type), column.nullable) == ("string", True)


def test_checkpoint_keeps_the_organisation_and_one_written_before_it_still_loads() -> None:
    from robolake.writer.index import EpisodeState

    episode = generate_episode(SyntheticSpec(seed=13, duration_s=0.3, cameras=()))
    clock = FakeClock()
    w = writer(clock)
    feed(w, episode, organisation="acme")
    state = w.episodes[episode.manifest.episode_id]
    saved = json.loads(json.dumps(state.to_json()))
    assert saved["organisation"] == "acme"
    assert EpisodeState.from_json(saved).index_row(1)["organisation"] == "acme"
    del saved["organisation"]  # the form writers before the field saved
    old = EpisodeState.from_json(saved)
    assert old.organisation is None
    assert old.index_row(1)["organisation"] is None


def test_index_rows_carry_each_episodes_share_of_the_shard_bytes(
    episode: SyntheticEpisode,
) -> None:
    """``stored_bytes``: every file's size split between its episodes by rows, summed over the
    flushes an episode spans, so the episodes of a partition sum to its shard bytes exactly and
    the exporter need not read the files (schemas/tables/episodes_index.v1.json)."""
    from robolake.episode.shards import apportion

    other = generate_episode(SyntheticSpec(seed=21, duration_s=0.5, cameras=("head",)))
    clock = FakeClock()
    w = writer(clock)
    # ``other`` spans two flushes: its manifest and first chunks in the first, with all of
    # ``episode``; the rest and its completion in the second.
    offset = feed(w, episode)
    manifest = other.manifest
    offset += 1
    w.accept(
        record(offset, manifest_record(manifest, other.manifest_bytes()), other.manifest_bytes())
    )
    chunks = list(other.iter_chunks(64 * 1024))
    for stream, seq, data in chunks[: len(chunks) // 2]:
        offset += 1
        w.accept(record(offset, chunk_record(manifest, stream, seq, data), data))
    flushes = []
    clock.now += 5
    first = w.prepare("age")
    assert first is not None
    w.finished(first)
    flushes.append(first)
    for stream, seq, data in chunks[len(chunks) // 2 :]:
        offset += 1
        w.accept(record(offset, chunk_record(manifest, stream, seq, data), data))
    value = json.dumps(other.completion_document(other.chunks(64 * 1024))).encode()
    w.accept(record(offset + 1, complete_record(manifest, value), value))
    clock.now += 5
    second = w.prepare("age")
    assert second is not None
    flushes.append(second)

    expected: dict[str, int] = {}
    shard_bytes = 0
    for flush in flushes:
        for file in flush.files:
            if file.kind == "index":
                continue
            shard_bytes += len(file.data)
            ids = pq.read_table(io.BytesIO(file.data), columns=["episode_id"])["episode_id"]
            counts: dict[str, int] = {}
            for one in ids.to_pylist():
                counts[one] = counts.get(one, 0) + 1
            for episode_id, part in apportion(len(file.data), counts).items():
                expected[episode_id] = expected.get(episode_id, 0) + part
    rows = {row["episode_id"]: row for flush in flushes for row in _index_of(flush)}
    ids = (episode.manifest.episode_id, manifest.episode_id)
    assert {e: rows[e]["stored_bytes"] for e in ids} == {e: expected[e] for e in ids}
    assert sum(rows[e]["stored_bytes"] for e in ids) == shard_bytes  # type: ignore[misc]
    assert all(rows[e]["stored_bytes"] > 0 for e in ids)  # type: ignore[operator]
    # A checkpoint written before the field: the earlier files' bytes are unknown, so null.
    saved = json.loads(json.dumps(w.episodes[manifest.episode_id].to_json()))
    assert saved["stored_bytes"] == expected[manifest.episode_id]
    del saved["stored_bytes"]
    assert EpisodeState.from_json(saved).index_row(1)["stored_bytes"] is None
