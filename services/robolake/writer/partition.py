"""One partition's writer: judge each record, buffer its rows, prepare flushes.

Pure logic over an injected clock -- no Kafka, no S3 -- so every rule is unit-testable. The run
loop (:mod:`robolake.writer.consumer`) feeds records in offset order, asks :meth:`due` after
each batch and on every tick, uploads what :meth:`prepare` returns, commits, then calls
:meth:`finished`.

Per record, cheapest checks first; a failure yields a dead letter with a contract reason:

1. headers and key (``parse_record``), then the value's sha256 against the ``checksum`` header;
2. manifest: schema and rules, identity equal to the headers, one manifest per episode;
3. chunk: the stamped identity (capture point, device, stream declared, type and fingerprint)
   must match the episode's manifest; then dedup by (episode_id, stream, seq) + checksum; then
   full validation (``validate_chunk``). Without a manifest (it went to dead letters, or the
   writer started mid-topic) the chunk is checked against the type its headers name;
4. completion: schema and declared streams.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from robolake.episode.checksums import verify_checksum
from robolake.episode.chunks import ChunkLimits, check_schema, decode_chunk, validate_chunk
from robolake.episode.completion import parse_completion
from robolake.episode.errors import ContractViolation, Reason
from robolake.episode.ids import episode_date
from robolake.episode.manifest import EpisodeManifest, parse_manifest
from robolake.episode.records import RecordMeta, parse_record
from robolake.episode.shards import apportion, concat_in_order, to_shard_rows
from robolake.episode.stream_types import StreamType, StreamTypeRegistry, default_registry
from robolake.episode.topics import MAX_RECORD_BYTES
from robolake.writer.batcher import Clock, FlushPolicy, PartitionBuffer
from robolake.writer.checkpoints import Checkpoint
from robolake.writer.index import SUCCESS_LABEL, EpisodeState, index_files, index_table
from robolake.writer.layout import BUCKET_LAYOUT, FlushLayout
from robolake.writer.metrics import FlushReason, RecordOutcome
from robolake.writer.shards import encode_parquet

log = logging.getLogger(__name__)

#: Dead-letter messages of records that hit a writer bug start with this (the reason is
#: ``record_invalid``); tests assert no valid input ever gets one.
UNEXPECTED_PREFIX: Final = "unexpected_error: "

#: The writer accepts any chunk Kafka could carry; the collector enforces the device limit.
WRITER_CHUNK_LIMITS: Final = ChunkLimits(max_chunk_bytes=MAX_RECORD_BYTES)


class ConsumedRecord(Protocol):
    """The fields of an aiokafka ``ConsumerRecord`` the writer reads."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Any: ...


@dataclass(frozen=True)
class DeadLetter:
    """A record the writer cannot store, and why."""

    record: ConsumedRecord
    reason: Reason
    message: str


@dataclass(frozen=True)
class Verdict:
    outcome: RecordOutcome
    dead_letter: DeadLetter | None = None


@dataclass(frozen=True)
class FlushFile:
    """One object a flush uploads."""

    key: str
    data: bytes
    kind: str  # a stream type key, or "index"
    rows: int


@dataclass(frozen=True)
class PreparedFlush:
    """Everything one flush writes, computed once so that retries upload identical bytes."""

    reason: FlushReason
    checkpoint: Checkpoint
    files: tuple[FlushFile, ...]
    #: Offset to commit once every object is stored; None for an index-only flush.
    commit_to: int | None
    index_complete: int
    index_incomplete: int
    buffered_bytes: int

    @property
    def nbytes(self) -> int:
        return sum(len(f.data) for f in self.files)


class PartitionWriter:
    """State and buffer of one assigned partition."""

    def __init__(
        self,
        topic: str,
        partition: int,
        *,
        policy: FlushPolicy,
        episodes: dict[str, EpisodeState] | None = None,
        committed: int | None = None,
        flush: int = 0,
        dedup_window_s: float = 3600.0,
        incomplete_after_s: float = 3600.0,
        clock: Clock = time.time,
        registry: StreamTypeRegistry | None = None,
        layout: FlushLayout = BUCKET_LAYOUT,
        floors: Mapping[str, int] | None = None,
        table_offsets: Mapping[str, int | None] | None = None,
    ) -> None:
        """``floors``: per stream type, the offset below which its table already holds this
        partition's rows (a flush committed there but not to the index, before a crash);
        those chunks update the state but are not written again. ``table_offsets``: per
        table, the offset it records for this partition -- what the next commit expects."""
        self.topic = topic
        self.partition = partition
        self.policy = policy
        self.episodes: dict[str, EpisodeState] = episodes or {}
        #: Offset committed to Kafka (the next record this partition's state has not seen).
        self.committed = committed
        #: Number of the last flush stored (carried in checkpoints; orders their keys).
        self.flush = flush
        self.dedup_window_s = dedup_window_s
        self.incomplete_after_s = incomplete_after_s
        self.clock = clock
        self.registry = registry or default_registry()
        self.layout = layout
        self.floors: dict[str, int] = dict(floors or {})
        self.table_offsets: dict[str, int | None] = dict(table_offsets or {})
        self.buffer = PartitionBuffer()
        #: A prepared flush not yet stored and committed (retried as is).
        self.pending: PreparedFlush | None = None
        #: The checkpoint key of the last committed flush (garbage after the next commit).
        self.last_checkpoint: str | None = None
        #: The partition's end offset in Kafka when the loop last looked (None: not yet).
        self.highwater: int | None = None

    def __repr__(self) -> str:
        return f"PartitionWriter({self.topic}[{self.partition}])"

    # -- records ---------------------------------------------------------------------------

    def accept(self, record: ConsumedRecord) -> Verdict:
        """Judge and buffer one record; never raises on bad data."""
        now = self.clock()
        value = record.value if record.value is not None else b""
        episode: EpisodeState | None = None
        try:
            meta = parse_record(record.key, list(record.headers or ()))
            episode = self._episode(meta, now)
            verify_checksum(value, meta.checksum)
            if meta.kind == "manifest":
                outcome = self._manifest(episode, meta, value)
            elif meta.kind == "chunk":
                outcome = self._chunk(episode, meta, value, record.offset, now)
            else:
                outcome = self._completion(episode, value)
        except ContractViolation as exc:
            self.buffer.note(record.offset, now)
            if episode is not None:
                episode.dead_lettered = True
                episode.changed = True
            log.warning(
                "%s[%d]@%d: dead letter (%s): %s",
                record.topic,
                record.partition,
                record.offset,
                exc.reason,
                exc.message,
            )
            return Verdict("dead_letter", DeadLetter(record, exc.reason, exc.message))
        except Exception as exc:
            # A record the contract let through but this writer cannot handle is a bug to fix,
            # not a reason to stop the partition: every record after it would wait forever
            # (and crash-loop on every restart). It goes to dead letters with the error, and
            # the log has the traceback; checks run before any state changes, so none is torn.
            self.buffer.note(record.offset, now)
            log.exception(
                "%s[%d]@%d: unexpected error judging a record; dead-lettered",
                record.topic,
                record.partition,
                record.offset,
            )
            message = f"{UNEXPECTED_PREFIX}{type(exc).__name__}: {exc}"
            return Verdict("dead_letter", DeadLetter(record, "record_invalid", message))
        self.buffer.note(record.offset, now)
        return Verdict(outcome)

    def _episode(self, meta: RecordMeta, now: float) -> EpisodeState:
        episode = self.episodes.get(meta.episode_id)
        if episode is None:
            episode = self.episodes[meta.episode_id] = EpisodeState(
                meta.episode_id, meta.capture_point_id, meta.device_id
            )
        episode.last_seen = now
        return episode

    def _manifest(self, episode: EpisodeState, meta: RecordMeta, value: bytes) -> RecordOutcome:
        text = value.decode("utf-8", errors="replace")
        if episode.manifest_json is not None:
            if episode.manifest_json == text:
                return "duplicate"
            raise ContractViolation(
                "manifest_invalid",
                f"episode {meta.episode_id} already has a different manifest; the first one "
                "stands -- register a changed episode under a new episode_id",
            )
        manifest = parse_manifest(value, self.registry)
        stamped = (meta.episode_id, meta.capture_point_id, meta.device_id)
        declared = (manifest.episode_id, manifest.capture_point_id, manifest.device_id)
        if stamped != declared:
            raise ContractViolation(
                "record_invalid",
                f"record headers say episode/capture point/device {stamped}, the manifest says "
                f"{declared}",
            )
        _check_indexable(episode, manifest, text)
        episode.set_manifest(manifest, text)
        # The manifest record's stamp is the episode's provenance; later records cannot move it.
        episode.organisation = meta.organisation
        episode.changed = True
        return "stored"

    def _chunk(
        self, episode: EpisodeState, meta: RecordMeta, value: bytes, offset: int, now: float
    ) -> RecordOutcome:
        assert meta.stream is not None
        assert meta.seq is not None
        assert meta.stream_type is not None
        manifest = episode.manifest
        if manifest is not None:
            if (meta.capture_point_id, meta.device_id) != (
                manifest.capture_point_id,
                manifest.device_id,
            ):
                raise ContractViolation(
                    "record_invalid",
                    f"chunk stamped with capture point {meta.capture_point_id!r} and device "
                    f"{meta.device_id!r}; the episode's manifest names "
                    f"{manifest.capture_point_id!r} and {manifest.device_id!r}",
                    stream=meta.stream,
                )
            stream_type = manifest.stream(meta.stream).stream_type  # unknown_stream
            if (meta.stream_type, meta.schema_fingerprint) != (
                stream_type.key,
                stream_type.fingerprint,
            ):
                raise ContractViolation(
                    "schema_mismatch",
                    f"chunk stamped {meta.stream_type} ({meta.schema_fingerprint}); the manifest "
                    f"declares stream {meta.stream!r} as {stream_type.key} "
                    f"({stream_type.fingerprint})",
                    stream=meta.stream,
                )
        else:
            stream_type = self._header_type(meta)
        admission = episode.ledger.check(meta.stream, meta.seq, meta.checksum)
        if admission == "duplicate":
            return "duplicate"
        if admission == "conflict":
            episode.conflicting_duplicate = True
            raise ContractViolation(
                "record_invalid",
                f"conflicting_duplicate: chunk {meta.seq} of stream {meta.stream!r} was already "
                "stored with a different checksum; the first copy stands",
                stream=meta.stream,
            )
        if manifest is not None:
            checked = validate_chunk(value, manifest, meta.stream, limits=WRITER_CHUNK_LIMITS)
            table, first, last = checked.table, checked.first_t_ns, checked.last_t_ns
        else:
            table = decode_chunk(value)
            check_schema(table.schema, stream_type, stream=meta.stream)
            if table.num_rows == 0:
                raise ContractViolation("chunk_empty", "chunk has no rows", stream=meta.stream)
            t = table.column("t_ns")
            first, last = int(pc.min(t).as_py()), int(pc.max(t).as_py())
        rows = to_shard_rows(
            table,
            stream_type,
            episode_id=meta.episode_id,
            capture_point_id=meta.capture_point_id,
            stream=meta.stream,
            seq=meta.seq,
        )
        if offset < self.floors.get(stream_type.key, 0):
            # Its table took this chunk in a flush whose index commit never landed: count it
            # in the state (as that flush did), do not store it again.
            self.buffer.note(offset, now)
        else:
            self._buffer_chunk(offset, now, stream_type, meta, rows, len(value))
        episode.ledger.record(meta.stream, meta.seq, meta.checksum)
        episode.tally(meta.stream).add(table.num_rows, first, last, _success_labels(table))
        episode.changed = True
        return "stored"

    def _buffer_chunk(
        self,
        offset: int,
        now: float,
        stream_type: StreamType,
        meta: RecordMeta,
        rows: pa.Table,
        nbytes: int,
    ) -> None:
        assert meta.stream is not None
        assert meta.seq is not None
        self.buffer.add(
            offset,
            now,
            stream_type=stream_type,
            date=episode_date(meta.episode_id),
            episode_id=meta.episode_id,
            stream=meta.stream,
            seq=meta.seq,
            rows=rows,
            nbytes=nbytes,
        )

    def _header_type(self, meta: RecordMeta) -> StreamType:
        assert meta.stream_type is not None
        name, _, version = meta.stream_type.rpartition(".v")
        stream_type = self.registry.get(name, int(version))
        if stream_type.fingerprint != meta.schema_fingerprint:
            raise ContractViolation(
                "unknown_stream_type",
                f"{meta.stream_type} has fingerprint {stream_type.fingerprint} here, the record "
                f"says {meta.schema_fingerprint}; the schema files differ",
            )
        return stream_type

    def _completion(self, episode: EpisodeState, value: bytes) -> RecordOutcome:
        counts = parse_completion(value, episode.manifest)
        if episode.declared is not None:
            if episode.declared == counts:
                return "duplicate"
            raise ContractViolation(
                "manifest_invalid",
                f"episode {episode.episode_id} was already completed with other counts",
            )
        episode.declared = counts
        episode.changed = True
        return "stored"

    # -- flushing --------------------------------------------------------------------------

    def _index_due(self, episode: EpisodeState, now: float) -> bool:
        if episode.manifest_json is None:
            return False
        if episode.indexed_at_ns is not None:
            return episode.changed
        return episode.completed or now - episode.last_seen >= self.incomplete_after_s

    def due(self, now: float) -> FlushReason | None:
        """Why this partition should flush now, or None."""
        if self.pending is not None:
            return self.pending.reason
        reason = self.policy.due(self.buffer, now)
        if reason is not None:
            return reason
        if any(
            e.indexed_at_ns is None and not e.completed and self._index_due(e, now)
            for e in self.episodes.values()
        ):
            return "timeout"
        return None

    @property
    def held_bytes(self) -> int:
        """Memory this partition keeps: buffered chunks (with their per-chunk objects) and a
        prepared flush's files."""
        return self.buffer.memory + (self.pending.nbytes if self.pending is not None else 0)

    def position(self) -> int | None:
        """First offset of the next flush: the buffer's first, else the committed offset."""
        return self.buffer.first_offset if not self.buffer.empty else self.committed

    def prepare(self, reason: FlushReason) -> PreparedFlush | None:
        """Encode the buffer and due index rows; update the state to what it is after them.

        CPU-heavy (sort, Parquet, zstd): run it in a thread. None when there is nothing to
        write (no records buffered and no episode to index).
        """
        if self.pending is not None:
            return self.pending
        now = self.clock()
        position = self.position()
        indexable = [e for e in self.episodes.values() if self._index_due(e, now)]
        if position is None or (self.buffer.empty and not indexable):
            return None
        files: list[FlushFile] = []
        flush = self.flush + 1
        for group in self.buffer.groups.values():
            key = self.layout.shard_key(
                group.stream_type, group.date, self.topic, self.partition, position, flush
            )
            rows = self.layout.shard_rows(
                concat_in_order(group.tables), group.stream_type, group.date
            )
            data, count = encode_parquet(rows), rows.num_rows
            self._attribute(len(data), rows)
            del rows
            # The rows are in the file bytes now, which a retry re-uploads as they are; let the
            # decoded chunks go so that a flush does not hold its data twice.
            group.tables.clear()
            files.append(FlushFile(key, data, group.stream_type.key, count))
            for episode_id in group.episodes:
                self.episodes[episode_id].shard_files.add(key)
        indexed_at = int(now * 1_000_000_000)
        complete = incomplete = 0
        fresh = {e.episode_id for e in indexable}
        for episode in indexable:
            episode.indexed_at_ns = indexed_at
            episode.indexed_in = position
            episode.changed = False
        for index_file in index_files(
            self.episodes.values(),
            self.topic,
            self.partition,
            position,
            layout=self.layout,
            flush=flush,
            only=fresh if self.layout.tables else None,
        ):
            files.append(FlushFile(index_file.key, index_file.data, "index", len(index_file.rows)))
            for row in index_file.rows:
                if row["episode_id"] in fresh:
                    complete += row["complete"]
                    incomplete += not row["complete"]
        self._forget(now, position)
        commit_to = None if self.buffer.empty else (self.buffer.last_offset or 0) + 1
        checkpoint = Checkpoint(
            topic=self.topic,
            partition=self.partition,
            first=position,
            next=commit_to if commit_to is not None else position,
            keys=tuple(f.key for f in files),
            episodes=tuple(e.to_json() for e in self.episodes.values()),
            reason=reason,
            flush=flush,
            token=self.layout.token,
        )
        self.pending = PreparedFlush(
            reason=reason,
            checkpoint=checkpoint,
            files=tuple(files),
            commit_to=commit_to,
            index_complete=complete,
            index_incomplete=incomplete,
            buffered_bytes=self.buffer.nbytes,
        )
        if commit_to is not None:
            # Records after the flush go to a fresh buffer while the flush uploads; the
            # checkpoint above already holds the episode state as of the flush's last offset.
            self.buffer = PartitionBuffer()
        return self.pending

    def _attribute(self, size: int, rows: pa.Table) -> None:
        """Add each episode's share of a new shard file's bytes to its ``stored_bytes``.

        A file is written once per flush, and a retried flush reuses the prepared one (see
        :meth:`prepare`), so every file is counted once.
        """
        counts = pc.value_counts(rows["episode_id"]).to_pylist()
        share = apportion(size, {str(c["values"]): int(c["counts"]) for c in counts})
        for episode_id, part in share.items():
            episode = self.episodes[episode_id]
            if episode.stored_bytes is not None:
                episode.stored_bytes += part

    def _forget(self, now: float, position: int) -> None:
        """Drop episodes past the dedup window; give up on manifest-less ones.

        An episode indexed at ``position`` is kept whatever its age: the next flush at the same
        position (an index-only flush is followed by others there) rewrites that index file
        from the state, and recovery redoes it, so its row must stay in the state until the
        position moves on.
        """
        for episode_id, episode in list(self.episodes.items()):
            if (
                episode.manifest_json is None
                and not episode.abandoned
                and now - episode.last_seen >= self.incomplete_after_s
            ):
                episode.abandoned = True
                log.warning(
                    "%s[%d]: episode %s has chunks but no manifest after %.0f s; its rows "
                    "stay in the shards, it gets no index row",
                    self.topic,
                    self.partition,
                    episode_id,
                    self.incomplete_after_s,
                )
            settled = episode.abandoned or (
                episode.indexed_at_ns is not None and not episode.changed
            )
            last = max(episode.last_seen, (episode.indexed_at_ns or 0) / 1e9)
            if settled and now - last >= self.dedup_window_s and episode.indexed_in != position:
                del self.episodes[episode_id]

    def finished(self, flush: PreparedFlush) -> None:
        """The flush is stored and committed (its buffer was let go at :meth:`prepare`)."""
        if flush.commit_to is not None:
            self.committed = flush.commit_to
        self.pending = None
        self.last_checkpoint = flush.checkpoint.key
        self.flush = flush.checkpoint.flush


def _check_indexable(episode: EpisodeState, manifest: EpisodeManifest, text: str) -> None:
    """Build the episode's index row once, now, while its manifest record can still be refused.

    The index row is built again at every flush that indexes the episode, long after the
    manifest's record was judged; a value the row cannot hold must be found here, where it can
    go to dead letters, not there, where it would stop the partition.
    """
    trial = EpisodeState(episode.episode_id, episode.capture_point_id, episode.device_id)
    trial.set_manifest(manifest, text)
    try:
        index_table([trial.index_row(0)])
        episode_date(manifest.episode_id)
    except (pa.ArrowException, ValueError, OverflowError, UnicodeError) as exc:
        raise ContractViolation(
            "manifest_invalid", f"manifest cannot be stored in the episodes index: {exc}"
        ) from exc


def _success_labels(table: pa.Table) -> int:
    if "kind" not in table.column_names or not pa.types.is_string(table.schema.field("kind").type):
        return 0
    return int(pc.sum(pc.equal(table.column("kind"), SUCCESS_LABEL)).as_py() or 0)
