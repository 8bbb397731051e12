"""The partition writer's rules, with an injected clock and in-memory records."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest
from writer_fakes import FakeClock, MemoryStore, Record, record

from robolake.episode.records import chunk_record, complete_record, manifest_record
from robolake.episode.synthetic import SyntheticEpisode, SyntheticSpec, generate_episode
from robolake.writer.batcher import FlushPolicy, PartitionBuffer
from robolake.writer.checkpoints import Checkpoint, recover
from robolake.writer.partition import PartitionWriter


@pytest.fixture(scope="module")
def episode() -> SyntheticEpisode:
    return generate_episode(SyntheticSpec(seed=3, duration_s=1.0, cameras=("head",), frame_pool=2))


def writer(clock: FakeClock, **kwargs: object) -> PartitionWriter:
    policy = FlushPolicy(flush_bytes=10 * 2**20, flush_age_s=5.0)
    return PartitionWriter("chunks", 0, policy=policy, clock=clock, **kwargs)  # type: ignore[arg-type]


def feed(w: PartitionWriter, episode: SyntheticEpisode, *, complete: bool = True) -> int:
    offset = 0
    manifest = episode.manifest
    value = episode.manifest_bytes()
    assert w.accept(record(offset, manifest_record(manifest, value), value)).outcome == "stored"
    chunks = episode.chunks(64 * 1024)
    for stream, seq, data in episode.iter_chunks(64 * 1024):
        offset += 1
        verdict = w.accept(record(offset, chunk_record(manifest, stream, seq, data), data))
        assert verdict.outcome == "stored", verdict
    if complete:
        value = json.dumps(episode.completion_document(chunks)).encode()
        offset += 1
        w.accept(record(offset, complete_record(manifest, value), value))
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
