"""Flush checkpoints: how a replay after a crash or rebalance leaves neither loss nor duplicates.

The problem. A flush uploads several objects (one shard per stream type and date, index files)
and then commits the partition's offset. A crash in between leaves some objects in the bucket
whose records will be consumed again. Object keys carry the flush's first offset, so a replay
that cut *exactly* the same flushes would overwrite them -- but flush boundaries depend on
timing (age limit, memory, rebalances), so a replay may cut differently and leave the old
objects behind as duplicates.

The answer here: every flush first writes a **checkpoint** object
``_writer/checkpoints/{topic}/{partition:03d}/{first_offset:019d}.json`` naming the offset range,
every object key it is about to write, and the partition's episode state *after* the flush
(episode tallies, dedup ledger, index bookkeeping). Only then are the shards uploaded, and only
after all of them the offset ``last + 1`` is committed. A partition has at most one flush in
flight, so at any time the checkpoints in its folder are:

- the one whose ``next`` equals the committed offset: the state to resume from;
- older ones (garbage, deleted after the next commit);
- at most a few with ``first >= committed``: uncommitted flushes. Their objects may be partly in
  the bucket; they are deleted, with the checkpoint, before the partition is consumed again.

So whoever owns the partition next (this process after a restart, another after a rebalance)
starts from the committed offset with exactly the state that produced the committed shards,
removes every trace of uncommitted work, and replays. Rows are written exactly once whatever
the new flush boundaries, and the dedup ledger is exactly as it was at the committed offset.

An "index-only" flush (episodes given up on while nothing is buffered) has an empty range at
the committed position ``c``: there is no offset to commit, so its checkpoint is valid as soon as
it is written -- recovery treats a checkpoint with ``first == next == c`` as committed and
resumes from it. Its only objects are index files, which are a pure function of the episode
state it carries, so recovery *redoes* them (re-uploads the same bytes) in case the crash came
between the checkpoint and the upload: the checkpoint is a write-ahead record.

Several flushes can start at the same offset (index-only ones at ``c``, then the real flush
``[c, n)``), so a checkpoint's key carries a per-partition flush number after the first offset:
``{first_offset:019d}-{flush:010d}.json``. Keys never collide, the newest committed checkpoint
is the greatest (first offset, flush number), and deleting "the previous checkpoint" can never
delete the one just written. Checkpoints of older writers (``{first_offset:019d}.json``) read as
flush number 0.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from robolake.lake import layout as lake_layout
from robolake.writer.errors import CheckpointError
from robolake.writer.index import EpisodeState, index_files
from robolake.writer.shards import PARQUET_CONTENT_TYPE
from robolake.writer.storage import ObjectStore

log = logging.getLogger(__name__)

#: Private area of the writer in the dataset bucket; readers ignore it.
CHECKPOINT_ROOT: Final = "_writer/checkpoints/"
CHECKPOINT_VERSION: Final = 1
JSON_CONTENT_TYPE: Final = "application/json"


def checkpoint_prefix(topic: str, partition: int) -> str:
    return f"{CHECKPOINT_ROOT}{topic}/{partition:03d}/"


def checkpoint_key(topic: str, partition: int, first_offset: int, flush: int) -> str:
    return f"{checkpoint_prefix(topic, partition)}{first_offset:019d}-{flush:010d}.json"


@dataclass(frozen=True)
class Checkpoint:
    """What one flush writes and the partition state after it."""

    topic: str
    partition: int
    first: int
    next: int
    keys: tuple[str, ...]
    episodes: tuple[dict[str, Any], ...] = field(repr=False)
    reason: str = ""
    #: Per-partition flush number: orders flushes that start at the same offset.
    flush: int = 0
    #: The writing process's token in the table layout (its keys are named by the tables'
    #: snapshot summaries, never listed); "" in the bucket layout.
    token: str = ""

    @property
    def key(self) -> str:
        if self.token:
            return lake_layout.checkpoint_key(
                self.topic, self.partition, self.first, self.flush, self.token
            )
        return checkpoint_key(self.topic, self.partition, self.first, self.flush)

    @property
    def index_only(self) -> bool:
        """An empty offset range: episodes indexed while nothing was buffered."""
        return self.first == self.next

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "version": CHECKPOINT_VERSION,
                "topic": self.topic,
                "partition": self.partition,
                "first": self.first,
                "next": self.next,
                "reason": self.reason,
                "flush": self.flush,
                "token": self.token,
                "keys": list(self.keys),
                "episodes": list(self.episodes),
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes, *, where: str) -> Checkpoint:
        try:
            doc = json.loads(data)
            if doc["version"] != CHECKPOINT_VERSION:
                raise ValueError(f"version {doc['version']} is not {CHECKPOINT_VERSION}")
            return cls(
                topic=doc["topic"],
                partition=doc["partition"],
                first=doc["first"],
                next=doc["next"],
                keys=tuple(doc["keys"]),
                episodes=tuple(doc["episodes"]),
                reason=doc.get("reason", ""),
                flush=int(doc.get("flush", 0)),
                token=str(doc.get("token", "")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(
                f"checkpoint {where} is unreadable ({exc}); if it is older than the committed "
                "offset, delete it; otherwise restore it from the bucket's versioning"
            ) from exc


@dataclass(frozen=True)
class Recovery:
    """The state to resume a partition from, and what recovery removed or redid."""

    episodes: dict[str, EpisodeState]
    resumed_from: str | None
    removed_objects: tuple[str, ...]
    removed_checkpoints: tuple[str, ...]
    #: Flush number of the checkpoint resumed from (the next flush takes the one after).
    flush: int = 0
    #: Index files of an index-only checkpoint uploaded again (write-ahead redo).
    redone_objects: tuple[str, ...] = ()


_KEY = re.compile(r"^(\d{19})(?:-(\d{10}))?\.json$")


def _parse_key(key: str) -> tuple[int, int] | None:
    """(first offset, flush number) of a checkpoint key; None for anything else."""
    match = _KEY.match(key.rsplit("/", 1)[-1])
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2) or 0)


def recover(store: ObjectStore, topic: str, partition: int, committed: int | None) -> Recovery:
    """Bring a partition's objects in line with its committed offset; return the state to use.

    A checkpoint is committed when its range ends at or before the committed offset ``c``:
    ``first < c``, or an index-only one at ``c`` itself. Every other checkpoint belongs to a
    flush whose commit did not happen: its objects and itself are deleted. The newest committed
    checkpoint is the state to resume from; if it is index-only its index files are uploaded
    again (they may not all have been stored before the crash), older ones are garbage.

    Blocking (object store calls): run it in a thread. Idempotent: a crash in the middle is
    repaired by running it again.
    """
    listed = sorted(
        (parsed, obj.key)
        for obj in store.list(checkpoint_prefix(topic, partition))
        if (parsed := _parse_key(obj.key)) is not None
    )
    removed_objects: list[str] = []
    removed_checkpoints: list[str] = []
    settled: list[tuple[str, Checkpoint | None]] = []
    for (first, _), key in listed:
        if committed is not None and first < committed:
            settled.append((key, None))
            continue
        data = store.get(key)
        if data is None:
            continue
        checkpoint = Checkpoint.from_bytes(data, where=key)
        if committed is not None and checkpoint.index_only and checkpoint.first == committed:
            settled.append((key, checkpoint))
            continue
        for obj in checkpoint.keys:
            store.delete(obj)
            removed_objects.append(obj)
        store.delete(key)
        removed_checkpoints.append(key)
    episodes: dict[str, EpisodeState] = {}
    resumed_from: str | None = None
    flush = 0
    redone: list[str] = []
    if settled:
        key, known = settled[-1]
        if known is None:
            data = store.get(key)
            known = None if data is None else Checkpoint.from_bytes(data, where=key)
        if known is not None:
            checkpoint = known
            if checkpoint.next != committed:
                log.warning(
                    "%s[%d]: checkpoint %s ends at offset %d but the committed offset is %s; "
                    "resuming with its state anyway (were offsets reset by hand?)",
                    topic,
                    partition,
                    key,
                    checkpoint.next,
                    committed,
                )
            episodes = {
                state.episode_id: state
                for state in (EpisodeState.from_json(doc) for doc in checkpoint.episodes)
            }
            resumed_from = key
            flush = checkpoint.flush
            if checkpoint.index_only:
                for file in index_files(episodes.values(), topic, partition, checkpoint.first):
                    store.put(file.key, file.data, PARQUET_CONTENT_TYPE)
                    redone.append(file.key)
        for old, _ in settled[:-1]:
            store.delete(old)
            removed_checkpoints.append(old)
    if removed_objects or removed_checkpoints or redone:
        log.info(
            "%s[%d]: recovery at committed offset %s removed %d objects of uncommitted flushes "
            "and %d checkpoints, uploaded %d index files again",
            topic,
            partition,
            committed,
            len(removed_objects),
            len(removed_checkpoints),
            len(redone),
        )
    return Recovery(
        episodes,
        resumed_from,
        tuple(removed_objects),
        tuple(removed_checkpoints),
        flush=flush,
        redone_objects=tuple(redone),
    )


def delete_quietly(store: ObjectStore, keys: Sequence[str]) -> None:
    """Best-effort garbage collection: failures only leave a stale checkpoint behind."""
    from robolake.writer.errors import StorageUnavailable

    for key in keys:
        try:
            store.delete(key)
        except StorageUnavailable as exc:
            log.info(
                "could not delete stale checkpoint %s (%s); recovery removes it later", key, exc
            )
