"""As-of alignment: the newest sample at or before each tick, never one from the future."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from robolake.dataset.align import align_streams, asof_indices, frame_ticks
from robolake.dataset.errors import DatasetError


def test_frame_ticks_do_not_drift() -> None:
    ticks = frame_ticks(1_000, 1_000 + 10**9, 3.0)
    assert ticks.tolist() == [1_000, 333_334_333, 666_667_667, 1_000_001_000]
    assert len(frame_ticks(0, 10 * 10**9, 30.0)) == 301
    with pytest.raises(DatasetError):
        frame_ticks(0, 1, 0.0)


def test_asof_indices_backward_with_tolerance() -> None:
    t = np.array([10, 20, 30], dtype=np.int64)
    ticks = np.array([5, 10, 15, 29, 30, 100], dtype=np.int64)
    assert asof_indices(t, ticks).tolist() == [-1, 0, 0, 1, 2, 2]
    assert asof_indices(t, ticks, tolerance_ns=5).tolist() == [-1, 0, 0, -1, 2, -1]


def test_align_streams_takes_rows_by_time() -> None:
    fast = pa.table({"t_ns": pa.array(np.arange(0, 1000, 10), pa.int64()),
                     "v": pa.array(np.arange(100), pa.int64())})  # fmt: skip
    slow = pa.table({"t_ns": pa.array([5, 400, 990], pa.int64()), "s": ["a", "b", "c"]})
    frames = align_streams({"fast": fast, "slow": slow}, rate_hz=1e7)  # a tick every 100 ns
    assert frames["t_ns"].to_pylist() == [5, 105, 205, 305, 405, 505, 605, 705, 805, 905]
    assert frames["fast.v"].to_pylist() == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]
    assert frames["slow.s"].to_pylist() == ["a", "a", "a", "a", "b", "b", "b", "b", "b", "b"]
    assert frames["slow.t_ns"].to_pylist()[4] == 400
    with pytest.raises(DatasetError, match="not sorted"):
        align_streams({"x": pa.table({"t_ns": pa.array([2, 1], pa.int64())})}, 1.0)
