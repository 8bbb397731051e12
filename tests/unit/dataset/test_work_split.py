"""Ranks x workers partition the episodes: disjoint, complete, the same order on every rank."""

from __future__ import annotations

import pytest

from robolake.dataset.errors import DatasetError
from robolake.dataset.work_split import Slot, order, rank_from_env, units_for


@pytest.mark.parametrize(
    ("units", "ranks", "workers"), [(10, 2, 2), (3, 2, 2), (17, 3, 4), (1, 1, 1)]
)
def test_every_unit_read_by_exactly_one_slot(units: int, ranks: int, workers: int) -> None:
    for epoch in range(3):
        reading = order(range(units), shuffle=True, seed=5, epoch=epoch)
        got: list[int] = []
        for rank in range(ranks):
            for worker in range(workers):
                got += units_for(reading, Slot(rank, ranks, worker, workers))
        assert sorted(got) == list(range(units))


def test_shuffle_is_deterministic_and_changes_per_epoch() -> None:
    assert order(range(50), shuffle=True, seed=1, epoch=0) == order(
        range(50), shuffle=True, seed=1, epoch=0
    )
    assert order(range(50), shuffle=True, seed=1, epoch=0) != order(
        range(50), shuffle=True, seed=1, epoch=1
    )
    assert order(range(5), shuffle=False, seed=1, epoch=3) == [0, 1, 2, 3, 4]


def test_rank_from_env_and_invalid_slots() -> None:
    assert rank_from_env({"RANK": "3", "WORLD_SIZE": "8"}) == (3, 8)
    assert rank_from_env({}) == (0, 1)
    with pytest.raises(DatasetError):
        rank_from_env({"RANK": "x"})
    with pytest.raises(DatasetError, match="rank 2"):
        Slot(rank=2, world_size=2)
    with pytest.raises(DatasetError, match="worker 1"):
        Slot(worker=1, num_workers=1)
