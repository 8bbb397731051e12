"""Per-episode feature statistics, and merging them into dataset statistics correctly.

Normalisation layers are fitted to these numbers, so they must be right for the whole dataset,
not approximately right per episode:

- ``count``, ``min`` and ``max`` merge exactly (sum, min, max);
- ``mean`` and ``std`` merge exactly with the parallel-variance formula (Chan et al.): the
  combined mean is the count-weighted mean, and the combined sum of squared deviations is the sum
  of the parts' plus ``n_a * n_b / n * (mean_a - mean_b)^2`` -- never an average of stds;
- quantiles do **not** merge from per-part quantiles (the average of medians is not the median),
  so dataset quantiles are computed again from the data itself (:func:`merge` takes it).

Statistics are per dimension of a vector feature (axis 0 is the frame axis). Arithmetic is in
float64; ``std`` is the population standard deviation (``ddof=0``), as ``numpy.std``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from robolake.dataset.errors import DatasetError

#: Quantiles reported, with LeRobot's key names (q01 = 1st percentile …).
QUANTILES: Final = (0.01, 0.10, 0.50, 0.90, 0.99)
_F64 = np.ndarray[Any, np.dtype[np.float64]]


def quantile_key(q: float) -> str:
    """``0.01`` → ``q01``, ``0.5`` → ``q50``."""
    return f"q{round(q * 100):02d}"


@dataclass(frozen=True)
class FeatureStats:
    """Statistics of one feature over some frames; arrays have the feature's shape."""

    count: int
    min: _F64
    max: _F64
    mean: _F64
    std: _F64
    quantiles: dict[str, _F64]

    def to_json(self) -> dict[str, Any]:
        """Plain lists, as ``meta/stats.json`` and the episodes table store them."""
        out: dict[str, Any] = {
            "min": self.min.tolist(),
            "max": self.max.tolist(),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "count": [self.count],
        }
        out.update({key: value.tolist() for key, value in self.quantiles.items()})
        return out


def compute(values: np.ndarray[Any, Any]) -> FeatureStats:
    """Statistics of ``values`` (frames along axis 0)."""
    data = np.asarray(values, dtype=np.float64)
    if data.shape[0] == 0:
        raise DatasetError("no frames to compute statistics of")
    return FeatureStats(
        count=int(data.shape[0]),
        min=data.min(axis=0),
        max=data.max(axis=0),
        mean=data.mean(axis=0),
        std=data.std(axis=0),
        quantiles=_quantiles(data),
    )


def _quantiles(data: _F64) -> dict[str, _F64]:
    values = np.quantile(data, QUANTILES, axis=0)
    return {quantile_key(q): values[i] for i, q in enumerate(QUANTILES)}


def merge_moments(parts: Sequence[FeatureStats]) -> tuple[int, _F64, _F64, _F64, _F64]:
    """``(count, min, max, mean, std)`` of the union of the parts, exactly."""
    if not parts:
        raise DatasetError("no statistics to merge")
    count = parts[0].count
    mean = parts[0].mean.copy()
    m2 = parts[0].std ** 2 * parts[0].count  # sum of squared deviations from the mean
    low, high = parts[0].min.copy(), parts[0].max.copy()
    for part in parts[1:]:
        total = count + part.count
        delta = part.mean - mean
        mean = mean + delta * (part.count / total)
        m2 = m2 + part.std**2 * part.count + delta**2 * (count * part.count / total)
        count = total
        low, high = np.minimum(low, part.min), np.maximum(high, part.max)
    return count, low, high, mean, np.sqrt(m2 / count)


def merge(parts: Sequence[FeatureStats], data: np.ndarray[Any, Any]) -> FeatureStats:
    """Dataset statistics from the parts' statistics and the data they were computed on.

    Moments come from the parts (exact); quantiles from ``data`` (all frames of all parts).
    """
    count, low, high, mean, std = merge_moments(parts)
    values = np.asarray(data, dtype=np.float64)
    if values.shape[0] != count:
        raise DatasetError(f"statistics cover {count} frames but {values.shape[0]} were given")
    return FeatureStats(count, low, high, mean, std, _quantiles(values))
