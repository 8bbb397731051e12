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

An "index-only" flush (an episode given up on while nothing is buffered) has an empty range at
the current position ``p``: it writes its checkpoint at ``p`` and the index file at ``p`` without
a commit. It is treated as uncommitted on recovery -- the episode times out again and is
re-indexed -- and the next real flush at ``p`` rewrites the same index key with those rows
included, so nothing is lost while it is pending.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from robolake.writer.errors import CheckpointError
from robolake.writer.index import EpisodeState
from robolake.writer.storage import ObjectStore

log = logging.getLogger(__name__)

#: Private area of the writer in the dataset bucket; readers ignore it.
CHECKPOINT_ROOT: Final = "_writer/checkpoints/"
CHECKPOINT_VERSION: Final = 1
JSON_CONTENT_TYPE: Final = "application/json"


def checkpoint_prefix(topic: str, partition: int) -> str:
    return f"{CHECKPOINT_ROOT}{topic}/{partition:03d}/"


def checkpoint_key(topic: str, partition: int, first_offset: int) -> str:
    return f"{checkpoint_prefix(topic, partition)}{first_offset:019d}.json"


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

    @property
    def key(self) -> str:
        return checkpoint_key(self.topic, self.partition, self.first)

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "version": CHECKPOINT_VERSION,
                "topic": self.topic,
                "partition": self.partition,
                "first": self.first,
                "next": self.next,
                "reason": self.reason,
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
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(
                f"checkpoint {where} is unreadable ({exc}); if it is older than the committed "
                "offset, delete it; otherwise restore it from the bucket's versioning"
            ) from exc


@dataclass(frozen=True)
class Recovery:
    """The state to resume a partition from, and what recovery removed."""

    episodes: dict[str, EpisodeState]
    resumed_from: str | None
    removed_objects: tuple[str, ...]
    removed_checkpoints: tuple[str, ...]


def _first_offset(key: str) -> int | None:
    name = key.rsplit("/", 1)[-1]
    stem = name.removesuffix(".json")
    return int(stem) if stem.isdigit() and name.endswith(".json") else None


def recover(store: ObjectStore, topic: str, partition: int, committed: int | None) -> Recovery:
    """Bring a partition's objects in line with its committed offset; return the state to use.

    Blocking (object store calls): run it in a thread. Idempotent: a crash in the middle is
    repaired by running it again.
    """
    listed = sorted(
        (offset, obj.key)
        for obj in store.list(checkpoint_prefix(topic, partition))
        if (offset := _first_offset(obj.key)) is not None
    )
    uncommitted = [(o, k) for o, k in listed if committed is None or o >= committed]
    settled = [(o, k) for o, k in listed if committed is not None and o < committed]
    removed_objects: list[str] = []
    removed_checkpoints: list[str] = []
    for _, key in uncommitted:
        data = store.get(key)
        if data is not None:
            for obj in Checkpoint.from_bytes(data, where=key).keys:
                store.delete(obj)
                removed_objects.append(obj)
        store.delete(key)
        removed_checkpoints.append(key)
    episodes: dict[str, EpisodeState] = {}
    resumed_from: str | None = None
    if settled:
        _, key = settled[-1]
        data = store.get(key)
        if data is not None:
            checkpoint = Checkpoint.from_bytes(data, where=key)
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
        for _, old in settled[:-1]:
            store.delete(old)
            removed_checkpoints.append(old)
    if removed_objects or removed_checkpoints:
        log.info(
            "%s[%d]: recovery at committed offset %s removed %d objects of uncommitted flushes "
            "and %d checkpoints",
            topic,
            partition,
            committed,
            len(removed_objects),
            len(removed_checkpoints),
        )
    return Recovery(episodes, resumed_from, tuple(removed_objects), tuple(removed_checkpoints))


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
