"""``CaptureClient``: how a device records an episode and gets it into robolake.

::

    async with CaptureClient(uploader, Spool(path)) as client:
        await client.resume()                      # finish what a crash left behind
        episode = await client.open_episode(manifest_json)
        await episode.append("joint_state", table)  # rows as they are recorded
        ...
        await episode.close()                      # all chunks + completion acknowledged

Rows are buffered per stream and cut into chunks of at most ``max_chunk_bytes``; each chunk is
spooled to disk, then uploaded in the background with bounded concurrency. A chunk leaves the
spool only when the collector acknowledged it (it is in Kafka), so killing the device at any point
loses nothing: :meth:`CaptureClient.resume` uploads what is left and sends pending completions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from robolake.capture.errors import Rejected
from robolake.capture.spool import Journal, Spool, SpooledChunk
from robolake.capture.uploader import TicketExpired, Uploader
from robolake.episode.chunks import split_into_chunks
from robolake.episode.manifest import EpisodeManifest, parse_manifest
from robolake.episode.topics import DEFAULT_MAX_CHUNK_BYTES

log = logging.getLogger(__name__)

#: Register again when a ticket has less than this left (seconds).
_TICKET_MARGIN = 600.0


@dataclass
class EpisodeOutcome:
    """What happened to one episode's uploads."""

    episode_id: str
    chunks: int = 0
    rejected: list[tuple[str, int, str]] = field(default_factory=list)  # (stream, seq, reason)
    completed: bool = False


class CaptureClient:
    """A device's recorder and uploader, on top of a spool and an uploader."""

    def __init__(
        self,
        uploader: Uploader,
        spool: Spool,
        *,
        max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
        concurrency: int = 4,
    ) -> None:
        self.uploader = uploader
        self.spool = spool
        self.max_chunk_bytes = max_chunk_bytes
        self._slots = asyncio.Semaphore(concurrency)
        self._ticket_locks: dict[str, asyncio.Lock] = {}

    async def __aenter__(self) -> CaptureClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    # -- tickets ----------------------------------------------------------------------------
    async def _ticket(self, journal: Journal, *, renew: bool = False) -> str:
        lock = self._ticket_locks.setdefault(journal.episode_id, asyncio.Lock())
        async with lock:
            fresh = journal.ticket and journal.ticket_expires_at - time.time() > _TICKET_MARGIN
            if renew or not fresh:
                ticket, expires = await self.uploader.register(journal.manifest.encode())
                journal.ticket, journal.ticket_expires_at = ticket, expires
                self.spool.save(journal)
            assert journal.ticket is not None
            return journal.ticket

    # -- uploads ----------------------------------------------------------------------------
    async def _upload(self, journal: Journal, chunk: SpooledChunk, outcome: EpisodeOutcome) -> None:
        async with self._slots:
            data = await asyncio.to_thread(chunk.read)
            renew = False
            while True:
                ticket = await self._ticket(journal, renew=renew)
                try:
                    await self.uploader.put_chunk(
                        ticket, chunk.episode_id, chunk.stream, chunk.seq, data
                    )
                except TicketExpired:
                    renew = True
                    continue
                except Rejected as refusal:
                    if refusal.status == 401:
                        raise
                    target = self.spool.reject(chunk, refusal.reason, refusal.detail)
                    outcome.rejected.append((chunk.stream, chunk.seq, refusal.reason))
                    log.warning(
                        "chunk %s/%s/%d refused (%s); kept at %s",
                        chunk.episode_id, chunk.stream, chunk.seq, refusal.reason, target,
                    )  # fmt: skip
                    return
                break
        self.spool.acknowledged(chunk)
        outcome.chunks += 1

    async def _complete(self, journal: Journal, outcome: EpisodeOutcome) -> None:
        renew = False
        while True:
            ticket = await self._ticket(journal, renew=renew)
            try:
                declared = [decl.name for decl in parse_manifest(journal.manifest).streams]
                await self.uploader.complete(
                    ticket, journal.episode_id, journal.completion(declared)
                )
            except TicketExpired:
                renew = True
                continue
            break
        self.spool.finish(journal.episode_id)
        outcome.completed = True

    # -- public -----------------------------------------------------------------------------
    async def open_episode(self, manifest: bytes | str | Mapping[str, Any]) -> EpisodeRecorder:
        """Start recording an episode; its manifest is checked locally first."""
        text = manifest if isinstance(manifest, str) else (
            manifest.decode() if isinstance(manifest, bytes) else json.dumps(manifest)
        )  # fmt: skip
        parsed = parse_manifest(text)
        if parsed.episode_id in self.spool.episodes():
            # Interrupted before: keep numbering chunks where the spool stopped.
            journal = self.spool.load(parsed.episode_id)
        else:
            journal = Journal(episode_id=parsed.episode_id, manifest=text)
            self.spool.save(journal)
        await self._ticket(journal)
        recorder = EpisodeRecorder(self, journal, parsed)
        for chunk in self.spool.pending(parsed.episode_id):
            recorder._tasks.append(
                asyncio.create_task(self._upload(journal, chunk, recorder.outcome))
            )
        return recorder

    async def resume(self) -> list[EpisodeOutcome]:
        """Upload whatever the spool still holds (after a crash, reboot or outage).

        Closed episodes also get their completion. An episode interrupted while it was still
        being recorded keeps its journal: re-opening the same manifest continues it
        (:meth:`EpisodeRecorder.spooled_rows` says how many rows per stream are already cut);
        if it never is, the writer indexes it as incomplete with what arrived.
        """
        outcomes = []
        for episode_id in self.spool.episodes():
            journal = self.spool.load(episode_id)
            outcome = EpisodeOutcome(episode_id)
            pending = self.spool.pending(episode_id)
            log.info("resuming episode %s: %d chunks to upload", episode_id, len(pending))
            await asyncio.gather(*(self._upload(journal, c, outcome) for c in pending))
            if journal.closed:
                await self._complete(journal, outcome)
            outcomes.append(outcome)
        return outcomes


class EpisodeRecorder:
    """One episode being recorded: append rows per stream, then close."""

    def __init__(self, client: CaptureClient, journal: Journal, manifest: EpisodeManifest) -> None:
        self._client = client
        self._journal = journal
        self.manifest = manifest
        self.outcome = EpisodeOutcome(journal.episode_id)
        self._buffers: dict[str, list[pa.Table]] = {}
        self._buffered: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def episode_id(self) -> str:
        return self._journal.episode_id

    def spooled_rows(self, stream: str) -> int:
        """Rows of ``stream`` already cut into chunks (non-zero when continuing an episode)."""
        counter = self._journal.streams.get(stream)
        return counter.rows if counter is not None else 0

    async def append(self, stream: str, rows: pa.Table | pa.RecordBatch) -> None:
        """Add rows to a stream; full chunks are spooled and uploaded in the background."""
        self.manifest.stream(stream)  # unknown_stream early, on the device
        table = rows if isinstance(rows, pa.Table) else pa.Table.from_batches([rows])
        self._buffers.setdefault(stream, []).append(table)
        self._buffered[stream] = self._buffered.get(stream, 0) + table.nbytes
        if self._buffered[stream] >= self._client.max_chunk_bytes:
            await self._cut(stream)

    async def _cut(self, stream: str) -> None:
        pieces = self._buffers.pop(stream, [])
        self._buffered.pop(stream, None)
        if not pieces:
            return
        table = pa.concat_tables(pieces)
        decl = self.manifest.stream(stream)
        encoded = await asyncio.to_thread(
            lambda: list(split_into_chunks(table, decl.stream_type, self._client.max_chunk_bytes))
        )
        # Row count per chunk for the journal; reading an IPC stream back is zero-copy.
        for data in encoded:
            rows = pa.ipc.open_stream(data).read_all().num_rows
            # Disk write + fsync: off the event loop, so uploads in flight keep moving.
            chunk = await asyncio.to_thread(
                self._client.spool.put, self._journal, stream, data, rows
            )
            self._tasks.append(
                asyncio.create_task(self._client._upload(self._journal, chunk, self.outcome))
            )

    async def close(self) -> EpisodeOutcome:
        """Cut the remaining rows, wait for every upload, send the completion."""
        for stream in list(self._buffers):
            await self._cut(stream)
        self._journal.closed = True
        self._client.spool.save(self._journal)
        await asyncio.gather(*self._tasks)
        await self._client._complete(self._journal, self.outcome)
        return self.outcome
