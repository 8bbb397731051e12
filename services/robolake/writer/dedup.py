"""Dropping device retries: a chunk's identity is (episode_id, stream, seq).

Devices retry uploads after timeouts and 503s, and a retried chunk may already be in Kafka, so
the same chunk can arrive twice -- in the same flush or hours apart. Each episode keeps a ledger
of the chunks it stored and their checksums; a second copy with the same checksum is dropped, a
second copy with a different checksum is a conflict (the first stays, the episode is flagged
``conflicting_duplicate`` and the newcomer goes to dead letters).

The ledger lives as long as the episode's state: while the episode is open and for the dedup
window after it was indexed (see :mod:`robolake.writer.partition`), and it is saved with every
flush's checkpoint, so restarts and rebalances keep it. Checksums are stored truncated to 128
bits: ample to tell a retry from a different chunk, half the checkpoint size.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final, Literal

Admission = Literal["new", "duplicate", "conflict"]

#: Hex digits of the checksum kept per chunk (128 bits).
KEPT_DIGITS: Final = 32


def _short(checksum: str) -> str:
    return checksum.removeprefix("sha256:")[:KEPT_DIGITS]


class ChunkLedger:
    """The chunks one episode stored: ``stream -> seq -> checksum prefix``."""

    def __init__(self, entries: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self._seen: dict[str, dict[int, str]] = {
            stream: {int(seq): digest for seq, digest in seqs.items()}
            for stream, seqs in (entries or {}).items()
        }

    def check(self, stream: str, seq: int, checksum: str) -> Admission:
        """What a chunk is, without recording it."""
        known = self._seen.get(stream, {}).get(seq)
        if known is None:
            return "new"
        return "duplicate" if known == _short(checksum) else "conflict"

    def record(self, stream: str, seq: int, checksum: str) -> None:
        """Remember a stored chunk."""
        self._seen.setdefault(stream, {})[seq] = _short(checksum)

    def seqs(self, stream: str) -> Iterable[int]:
        return self._seen.get(stream, {}).keys()

    def __len__(self) -> int:
        return sum(len(seqs) for seqs in self._seen.values())

    def to_json(self) -> dict[str, dict[str, str]]:
        return {
            stream: {str(seq): digest for seq, digest in sorted(seqs.items())}
            for stream, seqs in self._seen.items()
        }
