"""Per-partition buffers and the flush policy.

A partition's buffer holds the rows of every record consumed since its last flush, grouped by
shard (stream type and date), plus the offset range those records span -- including records
that produced no rows (manifests, completions, duplicates, dead letters), whose offsets must be
committed too. A flush always takes the whole buffer, so a flush is exactly one offset range and
the next one starts where it ended.

The policy is pure: it reads the injected clock and the buffer, and answers why (or whether) to
flush -- size target reached, or oldest record too old (checked on every tick, not only when a
record arrives). The process-wide memory cap is the run loop's (``Writer._flush_due``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import pyarrow as pa

from robolake.episode.stream_types import StreamType
from robolake.writer.metrics import FlushReason

Clock = Callable[[], float]

#: Memory a buffered chunk costs beyond its bytes: the table, its schema, arrays, the key
#: tuple and the consumed record's header objects -- Python and Arrow objects. Measured
#: 10.6-11.3 KiB per 1-7 row chunk of joint_state and imu in a drain of 212,636 tiny chunks
#: (CPython 3.11, pyarrow 2x); a device sending 1-row chunks makes this eight times the
#: chunk's own bytes, so the memory cap must count it.
CHUNK_OVERHEAD_BYTES: Final = 10 * 1024


@dataclass
class ShardGroup:
    """Rows bound for one shard file: one stream type, one date."""

    stream_type: StreamType
    date: dt.date
    #: Shard rows of each chunk, keyed by (episode_id, stream, seq) to order them at the flush.
    tables: list[tuple[tuple[str, str, int], pa.Table]] = field(default_factory=list)
    episodes: set[str] = field(default_factory=set)
    nbytes: int = 0
    rows: int = 0


class PartitionBuffer:
    """Records consumed from one partition since its last flush."""

    def __init__(self) -> None:
        self.first_offset: int | None = None
        self.last_offset: int | None = None
        self.groups: dict[tuple[str, dt.date], ShardGroup] = {}
        #: Bytes of the chunks as received: what the size target (file size) is measured in.
        self.nbytes = 0
        #: Memory the buffered chunks hold: Arrow buffers plus per-chunk objects. The memory
        #: cap is measured in this, never in ``nbytes``: small chunks cost far more than their
        #: bytes (see CHUNK_OVERHEAD_BYTES).
        self.memory = 0
        #: Clock reading when the oldest buffered record arrived.
        self.oldest: float | None = None

    @property
    def empty(self) -> bool:
        """No record consumed since the last flush."""
        return self.first_offset is None

    def note(self, offset: int, now: float) -> None:
        """Account for a consumed record's offset, whether or not it produced rows."""
        if self.first_offset is None:
            self.first_offset = offset
            self.oldest = now
        self.last_offset = offset

    def add(
        self,
        offset: int,
        now: float,
        *,
        stream_type: StreamType,
        date: dt.date,
        episode_id: str,
        stream: str,
        seq: int,
        rows: pa.Table,
        nbytes: int,
    ) -> None:
        """Buffer the shard rows of one chunk record."""
        self.note(offset, now)
        group = self.groups.get((stream_type.key, date))
        if group is None:
            group = self.groups[(stream_type.key, date)] = ShardGroup(stream_type, date)
        group.tables.append(((episode_id, stream, seq), rows))
        group.episodes.add(episode_id)
        group.nbytes += nbytes
        group.rows += rows.num_rows
        self.nbytes += nbytes
        # Decoding is zero-copy where it can be, so the rows keep the whole record value
        # alive: count the larger of the value and the buffers (decompressed chunks own more).
        self.memory += max(nbytes, rows.get_total_buffer_size()) + CHUNK_OVERHEAD_BYTES


@dataclass(frozen=True)
class FlushPolicy:
    """When a partition's buffer should become shards."""

    flush_bytes: int
    flush_age_s: float

    def due(self, buffer: PartitionBuffer, now: float) -> FlushReason | None:
        if buffer.empty:
            return None
        if buffer.nbytes >= self.flush_bytes:
            return "size"
        if buffer.oldest is not None and now - buffer.oldest >= self.flush_age_s:
            return "age"
        return None
