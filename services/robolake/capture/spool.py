"""The device's spool: every chunk on local disk before upload, removed after acknowledgement.

Layout, one folder per episode::

    <spool>/<episode_id>/journal.json             manifest, ticket, per-stream counters, closed?
    <spool>/<episode_id>/<stream>.<seq>.<rows>.arrow   a chunk not yet acknowledged
    <spool>/rejected/<episode_id>.<stream>.<seq>.arrow (+ .json)  refused for good, kept for humans

Writes are atomic (temporary file, fsync, rename). A chunk file is written before the journal
counts it, so after a crash between the two the next :meth:`Spool.episodes` adopts the orphan
(its row count is in its name). A cap on the spool's bytes turns a long outage into a clear
:class:`~robolake.capture.errors.SpoolFull` instead of a full disk.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from robolake.capture.errors import SpoolFull

log = logging.getLogger(__name__)

JOURNAL: Final = "journal.json"
_CHUNK = re.compile(r"^(?P<stream>[a-z][a-z0-9_]*)\.(?P<seq>\d{8,})\.(?P<rows>\d+)\.arrow$")


def _atomic_write(path: Path, data: bytes, *, fsync: bool = True) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclass
class StreamCounter:
    """Chunks and rows cut so far for one stream."""

    chunks: int = 0
    rows: int = 0


@dataclass
class Journal:
    """What the spool remembers of one episode."""

    episode_id: str
    manifest: str
    ticket: str | None = None
    ticket_expires_at: float = 0.0
    streams: dict[str, StreamCounter] = field(default_factory=dict)
    closed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "episode_id": self.episode_id,
            "manifest": self.manifest,
            "ticket": self.ticket,
            "ticket_expires_at": self.ticket_expires_at,
            "streams": {k: {"chunks": v.chunks, "rows": v.rows} for k, v in self.streams.items()},
            "closed": self.closed,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Journal:
        return cls(
            episode_id=str(data["episode_id"]),
            manifest=str(data["manifest"]),
            ticket=data.get("ticket"),
            ticket_expires_at=float(data.get("ticket_expires_at") or 0.0),
            streams={k: StreamCounter(**v) for k, v in dict(data.get("streams", {})).items()},
            closed=bool(data.get("closed")),
        )

    def completion(self, declared: Iterable[str] = ()) -> dict[str, Any]:
        """The completion document: what was cut per stream, zero for declared streams that
        recorded nothing (the contract wants every declared stream counted)."""
        counts = {name: StreamCounter() for name in declared}
        counts.update(self.streams)
        return {"streams": {k: {"chunks": v.chunks, "rows": v.rows} for k, v in counts.items()}}


@dataclass(frozen=True)
class SpooledChunk:
    """A chunk waiting for its acknowledgement."""

    episode_id: str
    stream: str
    seq: int
    rows: int
    path: Path

    def read(self) -> bytes:
        return self.path.read_bytes()


class Spool:
    """A spool directory with a byte cap."""

    def __init__(self, root: Path, *, cap_bytes: int = 2 * 1024**3, fsync: bool = True) -> None:
        """``fsync=False`` trades durability across power loss for speed (the simulator, which
        emulates many devices on one disk); a crashed *process* still loses nothing."""
        self.root = root
        self.cap_bytes = cap_bytes
        self.fsync = fsync
        # put() runs in worker threads (the client keeps disk I/O off the event loop).
        self._lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)
        self.used_bytes = sum(
            p.stat().st_size for p in root.glob("*/*.arrow") if p.parent.name != "rejected"
        )

    def _dir(self, episode_id: str) -> Path:
        return self.root / episode_id

    # -- journals ---------------------------------------------------------------------------
    def save(self, journal: Journal) -> None:
        folder = self._dir(journal.episode_id)
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(folder / JOURNAL, json.dumps(journal.to_json()).encode(), fsync=self.fsync)

    def load(self, episode_id: str) -> Journal:
        journal = Journal.from_json(json.loads((self._dir(episode_id) / JOURNAL).read_text()))
        # Adopt chunks written just before a crash, before the journal counted them.
        for chunk in self.pending(episode_id):
            counter = journal.streams.setdefault(chunk.stream, StreamCounter())
            if chunk.seq == counter.chunks:
                counter.chunks += 1
                counter.rows += chunk.rows
                log.info(
                    "adopted chunk %s/%s/%d left by a crash", episode_id, chunk.stream, chunk.seq
                )
        return journal

    def episodes(self) -> list[str]:
        """Episodes with something left to do, oldest folder first."""
        folders = [p for p in self.root.iterdir() if (p / JOURNAL).is_file()]
        return [p.name for p in sorted(folders, key=lambda p: p.stat().st_mtime)]

    def finish(self, episode_id: str) -> None:
        """Forget an episode whose chunks and completion are all acknowledged."""
        shutil.rmtree(self._dir(episode_id), ignore_errors=True)

    # -- chunks -----------------------------------------------------------------------------
    def put(self, journal: Journal, stream: str, data: bytes, rows: int) -> SpooledChunk:
        """Spool the next chunk of ``stream`` and count it in the journal."""
        with self._lock:
            return self._put(journal, stream, data, rows)

    def _put(self, journal: Journal, stream: str, data: bytes, rows: int) -> SpooledChunk:
        if self.used_bytes + len(data) > self.cap_bytes:
            raise SpoolFull(
                f"spool {self.root} holds {self.used_bytes} of {self.cap_bytes} bytes; the "
                "collector has been unreachable too long -- free space or raise the cap"
            )
        counter = journal.streams.setdefault(stream, StreamCounter())
        seq = counter.chunks
        path = self._dir(journal.episode_id) / f"{stream}.{seq:08d}.{rows}.arrow"
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, data, fsync=self.fsync)
        self.used_bytes += len(data)
        counter.chunks += 1
        counter.rows += rows
        self.save(journal)
        return SpooledChunk(journal.episode_id, stream, seq, rows, path)

    def pending(self, episode_id: str) -> list[SpooledChunk]:
        """Chunks of an episode not yet acknowledged, in (stream, seq) order."""
        chunks = []
        folder = self._dir(episode_id)
        if not folder.is_dir():
            return []
        for path in folder.iterdir():
            match = _CHUNK.match(path.name)
            if match:
                chunks.append(
                    SpooledChunk(
                        episode_id,
                        match["stream"],
                        int(match["seq"]),
                        int(match["rows"]),
                        path,
                    )
                )
        return sorted(chunks, key=lambda c: (c.stream, c.seq))

    def acknowledged(self, chunk: SpooledChunk) -> None:
        """The collector acknowledged the chunk: drop it from disk."""
        try:
            size = chunk.path.stat().st_size
            chunk.path.unlink()
        except FileNotFoundError:
            return
        self.used_bytes -= size

    def reject(self, chunk: SpooledChunk, reason: str, detail: str) -> Path:
        """Move a chunk the collector refused for good aside, with the reason next to it."""
        folder = self.root / "rejected"
        folder.mkdir(exist_ok=True)
        target = folder / f"{chunk.episode_id}.{chunk.stream}.{chunk.seq:08d}.arrow"
        size = chunk.path.stat().st_size
        os.replace(chunk.path, target)
        self.used_bytes -= size
        _atomic_write(
            target.with_suffix(".json"), json.dumps({"reason": reason, "detail": detail}).encode()
        )
        return target
