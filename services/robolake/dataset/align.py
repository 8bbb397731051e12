"""Aligning streams recorded at different rates onto one fixed-rate timeline.

Policies train on frames: one row per tick at a fixed rate holding the latest sample of every
stream. That is an as-of join on ``t_ns`` (backward: the newest sample at or before the tick,
never one from the future, which would leak information a robot could not have had). It is done
with ``numpy.searchsorted`` over each stream's sorted ``t_ns``: vectorised, exact, and independent
of an engine's as-of semantics.

Output columns: ``t_ns`` (the tick), then per stream ``<stream>.t_ns`` (the sample used, so a
reader can see staleness) and ``<stream>.<field>`` for each other field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from robolake.dataset.errors import DatasetError

_NS_PER_S = 1_000_000_000
_I64 = np.ndarray[Any, np.dtype[np.int64]]


def frame_ticks(start_ns: int, end_ns: int, rate_hz: float) -> _I64:
    """Tick times ``start + k / rate`` for every k with the tick at or before ``end_ns``.

    Computed from the integer k (not by adding a rounded period), so ticks never drift.
    """
    if rate_hz <= 0 or not math.isfinite(rate_hz):
        raise DatasetError(f"alignment rate must be a positive number of Hz, not {rate_hz}")
    if end_ns < start_ns:
        return np.empty(0, dtype=np.int64)
    count = math.floor((end_ns - start_ns) * rate_hz / _NS_PER_S + 1e-9) + 1
    offsets = np.round(np.arange(count, dtype=np.float64) * (_NS_PER_S / rate_hz))
    ticks: _I64 = start_ns + offsets.astype(np.int64)
    return ticks[ticks <= end_ns]


def asof_indices(t_ns: _I64, ticks: _I64, tolerance_ns: int | None = None) -> _I64:
    """For each tick, the index of the newest sample at or before it, or -1 if there is none
    (or it is older than ``tolerance_ns``). ``t_ns`` must be sorted ascending."""
    index: _I64 = np.searchsorted(t_ns, ticks, side="right").astype(np.int64) - 1
    if tolerance_ns is not None and len(t_ns):
        stale = ticks - t_ns[np.maximum(index, 0)] > tolerance_ns
        index[stale] = -1
    return index


def coverage(streams: Mapping[str, pa.Table]) -> tuple[int, int]:
    """``(start, end)`` where every stream has begun and none has ended: the span in which an
    as-of join gives each stream a sample from inside its own recording."""
    firsts, lasts = [], []
    for name, table in streams.items():
        if table.num_rows == 0:
            raise DatasetError(f"stream {name!r} has no rows; leave it out of the alignment")
        times = table["t_ns"]
        firsts.append(int(times[0].as_py()))
        lasts.append(int(times[-1].as_py()))
    return max(firsts), min(lasts)


def align_streams(
    streams: Mapping[str, pa.Table],
    rate_hz: float,
    *,
    start_ns: int | None = None,
    end_ns: int | None = None,
    tolerance_ns: int | None = None,
    fields: Mapping[str, Sequence[str]] | None = None,
) -> pa.Table:
    """Streams (each sorted by ``t_ns``) as one table with a row per tick at ``rate_hz``.

    The timeline defaults to :func:`coverage`. A tick with no sample for a stream (before it
    starts, or a gap longer than ``tolerance_ns``) gets nulls in that stream's columns.
    ``fields`` limits the columns taken per stream (all fields by default).
    """
    if not streams:
        raise DatasetError("nothing to align: pass at least one stream")
    first, last = coverage(streams)
    ticks = frame_ticks(first if start_ns is None else start_ns,
                        last if end_ns is None else end_ns, rate_hz)  # fmt: skip
    columns: dict[str, pa.Array | pa.ChunkedArray] = {"t_ns": pa.array(ticks, pa.int64())}
    for name, table in streams.items():
        times = table["t_ns"].to_numpy()
        if len(times) > 1 and bool(np.any(np.diff(times) < 0)):
            raise DatasetError(f"stream {name!r} is not sorted by t_ns; sort it before aligning")
        index = asof_indices(times, ticks, tolerance_ns)
        take = pa.array(index, pa.int64(), mask=index < 0)
        wanted = list(fields[name]) if fields is not None and name in fields else None
        for column in table.column_names:
            if column != "t_ns" and wanted is not None and column not in wanted:
                continue
            columns[f"{name}.{column}"] = table[column].take(take)
    return pa.table(columns)
