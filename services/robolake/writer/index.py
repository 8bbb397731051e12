"""Per-episode state and the episodes index rows built from it (``schemas/shards.md``).

An episode lives in exactly one partition (key = episode_id), so its state belongs to that
partition's writer and moves with it on a rebalance: it is saved in every flush checkpoint and
loaded by whichever process owns the partition next (:mod:`robolake.writer.checkpoints`).

State per episode is small and independent of the data volume: the manifest text, per-stream
tallies (chunks, rows, first/last t_ns), the declared counts once the completion arrived, the
shard files holding its rows with its share of their bytes, and the chunk ledger used for dedup
(about 50 bytes per chunk).

An episode is indexed

- in the flush that stores the last of its records once its ``complete`` record has arrived
  (the completion is produced after every chunk was acknowledged, and a partition is read in
  order, so by then all its chunks are in this flush or earlier ones);
- as incomplete when none of its records arrived for ``incomplete_after_s``;
- again when something arrives after it was indexed (a late chunk): readers take the row with
  the newest ``indexed_at``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import pyarrow as pa

from robolake.episode.completion import StreamCount
from robolake.episode.ids import episode_date
from robolake.episode.manifest import EpisodeManifest, parse_manifest
from robolake.episode.shards import QUALITY_FLAGS, QualityFlag, episodes_index
from robolake.episode.stream_types import StreamType
from robolake.writer.dedup import ChunkLedger
from robolake.writer.layout import BUCKET_LAYOUT, FlushLayout
from robolake.writer.shards import encode_parquet

#: A stream's observed rate may differ from its declared ``rate_hz`` by this fraction.
RATE_TOLERANCE: Final = 0.2
#: Stream types of sparse events, for which a nominal rate means nothing.
SPARSE_TYPES: Final = frozenset({"event"})
#: The event kind that labels an episode's outcome.
SUCCESS_LABEL: Final = "success_label"


@dataclass
class StreamTally:
    """What was stored of one stream."""

    rows: int = 0
    chunks: int = 0
    first_t_ns: int | None = None
    last_t_ns: int | None = None
    success_labels: int = 0

    def add(self, rows: int, first_t_ns: int, last_t_ns: int, success_labels: int = 0) -> None:
        self.rows += rows
        self.chunks += 1
        self.first_t_ns = (
            first_t_ns if self.first_t_ns is None else min(self.first_t_ns, first_t_ns)
        )
        self.last_t_ns = last_t_ns if self.last_t_ns is None else max(self.last_t_ns, last_t_ns)
        self.success_labels += success_labels


@dataclass
class EpisodeState:
    """Everything the writer remembers about one episode of its partition."""

    episode_id: str
    capture_point_id: str
    device_id: str
    manifest_json: str | None = None
    #: Organisation stamped by the collector on the manifest record; None from older
    #: collectors (and in checkpoints written before the field existed).
    organisation: str | None = None
    tallies: dict[str, StreamTally] = field(default_factory=dict)
    declared: dict[str, StreamCount] | None = None
    conflicting_duplicate: bool = False
    dead_lettered: bool = False
    shard_files: set[str] = field(default_factory=set)
    #: Its share of the shard files' bytes (:func:`~robolake.episode.shards.apportion`), summed
    #: over the files written so far; None when unknown (state from a checkpoint written before
    #: the field existed: the bytes of its earlier files were not counted).
    stored_bytes: int | None = 0
    ledger: ChunkLedger = field(default_factory=ChunkLedger)
    #: Wall-clock seconds when a record of the episode last arrived.
    last_seen: float = 0.0
    #: When its newest index row was written (ns), and the flush position of that index file.
    indexed_at_ns: int | None = None
    indexed_in: int | None = None
    #: Something arrived since the last index row (or nothing was indexed yet).
    changed: bool = True
    #: Given up on without a manifest: there is nothing to index it with.
    abandoned: bool = False
    _manifest: EpisodeManifest | None = field(default=None, repr=False, compare=False)

    @property
    def manifest(self) -> EpisodeManifest | None:
        if self._manifest is None and self.manifest_json is not None:
            self._manifest = parse_manifest(self.manifest_json, check_owner=False)
        return self._manifest

    def set_manifest(self, manifest: EpisodeManifest, text: str) -> None:
        self._manifest = manifest
        self.manifest_json = text

    @property
    def completed(self) -> bool:
        """Whether the completion record arrived."""
        return self.declared is not None

    def tally(self, stream: str) -> StreamTally:
        return self.tallies.setdefault(stream, StreamTally())

    # -- the index row ---------------------------------------------------------------------

    def is_complete(self) -> bool:
        """Completion arrived and every declared stream's stored counts equal the declared."""
        manifest = self.manifest
        if self.declared is None or manifest is None:
            return False
        for decl in manifest.streams:
            want = self.declared.get(decl.name)
            have = self.tallies.get(decl.name, StreamTally())
            if want is None or (have.chunks, have.rows) != (want.chunks, want.rows):
                return False
        return True

    def quality_flags(self) -> list[QualityFlag]:
        """The closed set of doubts about this episode, in the contract's order."""
        manifest = self.manifest
        assert manifest is not None
        flags: set[QualityFlag] = set()
        labels = 0
        for decl in manifest.streams:
            have = self.tallies.get(decl.name, StreamTally())
            labels += have.success_labels
            seqs = list(self.ledger.seqs(decl.name))
            if seqs and max(seqs) + 1 > len(seqs):
                flags.add("missing_chunks")
            if self.declared is not None and decl.name in self.declared:
                want = self.declared[decl.name]
                if have.chunks < want.chunks:
                    flags.add("missing_chunks")
                elif have.chunks == want.chunks and have.rows != want.rows:
                    flags.add("row_count_mismatch")
            if have.rows == 0:
                flags.add("empty_stream")
            if _rate_off(decl.stream_type, decl.rate_hz, have):
                flags.add("rate_off_nominal")
        if self.conflicting_duplicate:
            flags.add("conflicting_duplicate")
        if self.dead_lettered:
            flags.add("dead_lettered_chunks")
        if labels == 0:
            flags.add("no_success_label")
        return [flag for flag in QUALITY_FLAGS if flag in flags]

    def index_row(self, indexed_at_ns: int) -> dict[str, Any]:
        """The episodes index row (a dict in the order of ``episodes_index.v1``)."""
        manifest = self.manifest
        assert manifest is not None
        assert self.manifest_json is not None
        streams = []
        for decl in manifest.streams:
            have = self.tallies.get(decl.name, StreamTally())
            want = (self.declared or {}).get(decl.name)
            streams.append(
                {
                    "name": decl.name,
                    "type": decl.stream_type.name,
                    "type_version": decl.stream_type.version,
                    "fingerprint": decl.stream_type.fingerprint,
                    "rows": have.rows,
                    "chunks": have.chunks,
                    "first_t_ns": have.first_t_ns,
                    "last_t_ns": have.last_t_ns,
                    "declared_rows": want.rows if want else None,
                    "declared_chunks": want.chunks if want else None,
                }
            )
        rights = manifest.rights
        return {
            "episode_id": self.episode_id,
            "capture_point_id": manifest.capture_point_id,
            "device_id": manifest.device_id,
            "robot_type": manifest.robot_type,
            "scene": manifest.scene,
            "task": manifest.task,
            "operator": manifest.operator,
            "started_at": manifest.started_at_ns,
            "ended_at": manifest.ended_at_ns,
            "tags": list(manifest.tags),
            "license": rights.license if rights else None,
            "consent": rights.consent if rights else None,
            "manifest_json": self.manifest_json,
            "streams": streams,
            "shard_files": sorted(self.shard_files),
            "complete": self.is_complete(),
            "quality_flags": list(self.quality_flags()),
            "indexed_at": indexed_at_ns,
            "organisation": self.organisation,
            "stored_bytes": self.stored_bytes,
        }

    # -- checkpoint form -------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "episode_id": self.episode_id,
            "capture_point_id": self.capture_point_id,
            "device_id": self.device_id,
            "manifest_json": self.manifest_json,
            "organisation": self.organisation,
            "tallies": {name: vars(t) for name, t in self.tallies.items()},
            "declared": (
                None
                if self.declared is None
                else {n: [c.chunks, c.rows] for n, c in self.declared.items()}
            ),
            "conflicting_duplicate": self.conflicting_duplicate,
            "dead_lettered": self.dead_lettered,
            "shard_files": sorted(self.shard_files),
            "stored_bytes": self.stored_bytes,
            "ledger": self.ledger.to_json(),
            "last_seen": self.last_seen,
            "indexed_at_ns": self.indexed_at_ns,
            "indexed_in": self.indexed_in,
            "changed": self.changed,
            "abandoned": self.abandoned,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EpisodeState:
        declared = data["declared"]
        return cls(
            episode_id=data["episode_id"],
            capture_point_id=data["capture_point_id"],
            device_id=data["device_id"],
            manifest_json=data["manifest_json"],
            organisation=data.get("organisation"),  # absent from older checkpoints
            tallies={name: StreamTally(**t) for name, t in data["tallies"].items()},
            declared=(
                None
                if declared is None
                else {n: StreamCount(chunks=c, rows=r) for n, (c, r) in declared.items()}
            ),
            conflicting_duplicate=data["conflicting_duplicate"],
            dead_lettered=data["dead_lettered"],
            shard_files=set(data["shard_files"]),
            stored_bytes=data.get("stored_bytes"),  # absent from older checkpoints: unknown
            ledger=ChunkLedger(data["ledger"]),
            last_seen=data["last_seen"],
            indexed_at_ns=data["indexed_at_ns"],
            indexed_in=data["indexed_in"],
            changed=data["changed"],
            abandoned=data["abandoned"],
        )


def _rate_off(stream_type: StreamType, rate_hz: float, tally: StreamTally) -> bool:
    if stream_type.name in SPARSE_TYPES or tally.rows < 3 or rate_hz <= 0:
        return False
    assert tally.first_t_ns is not None
    assert tally.last_t_ns is not None
    span_s = (tally.last_t_ns - tally.first_t_ns) / 1e9
    if span_s <= 0:
        return True
    observed = (tally.rows - 1) / span_s
    return abs(observed / rate_hz - 1.0) > RATE_TOLERANCE


def index_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Index rows as a table of the ``episodes_index.v1`` schema, sorted by episode id."""
    ordered = sorted(rows, key=lambda row: str(row["episode_id"]))
    return pa.Table.from_pylist(ordered, schema=episodes_index().schema)


@dataclass(frozen=True)
class IndexFile:
    """One episodes index file of a flush."""

    key: str
    data: bytes
    rows: list[dict[str, Any]]


def index_files(
    episodes: Iterable[EpisodeState],
    topic: str,
    partition: int,
    position: int,
    *,
    layout: FlushLayout = BUCKET_LAYOUT,
    flush: int = 0,
    only: Collection[str] | None = None,
) -> list[IndexFile]:
    """The index files of the flush at ``position``: one per date, every episode indexed there
    (``only`` those named, in the table layout: there each row is appended once).

    A pure function of the episode state, so recovery can upload an index-only flush's files
    again from its checkpoint and get the very same rows.
    """
    by_date: dict[dt.date, list[dict[str, Any]]] = {}
    for episode in episodes:
        if episode.indexed_in == position and episode.indexed_at_ns is not None:
            if only is not None and episode.episode_id not in only:
                continue
            row = episode.index_row(episode.indexed_at_ns)
            by_date.setdefault(episode_date(episode.episode_id), []).append(row)
    return [
        IndexFile(
            layout.index_key(date, topic, partition, position, flush),
            encode_parquet(layout.index_rows(index_table(rows), date)),
            rows,
        )
        for date, rows in sorted(by_date.items())
    ]


def dumps_states(states: Iterable[EpisodeState]) -> str:
    """Compact JSON of episode states, for checkpoints."""
    return json.dumps([s.to_json() for s in states], separators=(",", ":"))
