"""Which episodes a training process reads: split by distributed rank, then by DataLoader worker.

Every (rank, worker) pair gets a disjoint share of the work units (episodes), and together they
cover all of them, so an epoch reads every frame exactly once. Shuffling permutes the units with
``seed + epoch`` *before* splitting: every rank computes the same permutation without talking to
the others. Torch-free, so the arithmetic is tested without PyTorch.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from robolake.dataset.errors import DatasetError

T = TypeVar("T")


@dataclass(frozen=True)
class Slot:
    """One reader among ``world_size`` ranks x ``num_workers`` DataLoader workers."""

    rank: int = 0
    world_size: int = 1
    worker: int = 0
    num_workers: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size:
            raise DatasetError(f"rank {self.rank} is not in [0, world_size={self.world_size})")
        if not 0 <= self.worker < self.num_workers:
            raise DatasetError(f"worker {self.worker} is not in [0, {self.num_workers})")


def rank_from_env(environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """``(rank, world_size)`` from ``RANK``/``WORLD_SIZE`` (set by ``torchrun``), else (0, 1)."""
    env = os.environ if environ is None else environ
    try:
        return int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1"))
    except ValueError as exc:
        raise DatasetError(f"RANK/WORLD_SIZE must be integers: {exc}") from exc


def order(units: Sequence[T], *, shuffle: bool, seed: int, epoch: int) -> list[T]:
    """The units in reading order: as given, or permuted identically on every rank."""
    result = list(units)
    if shuffle:
        random.Random(seed * 1_000_003 + epoch).shuffle(result)
    return result


def units_for(units: Sequence[T], slot: Slot) -> list[T]:
    """The share of ``units`` one slot reads: every ``world_size``-th unit for its rank, then
    every ``num_workers``-th of those for its worker."""
    return list(units)[slot.rank :: slot.world_size][slot.worker :: slot.num_workers]
