"""Merged statistics equal numpy on the concatenated data; quantiles are never averaged."""

from __future__ import annotations

import numpy as np
import pytest

from robolake.dataset import feature_stats
from robolake.dataset.errors import DatasetError


def _parts(rng: np.random.Generator) -> list[np.ndarray]:
    # Episodes of very different lengths, offsets and spreads: where naive averaging fails.
    return [
        rng.normal(0.0, 1.0, (500, 4)),
        rng.normal(10.0, 0.1, (7, 4)),
        rng.exponential(3.0, (1200, 4)),
        rng.uniform(-5, 5, (1, 4)),
    ]


def test_merge_equals_numpy_on_the_concatenation() -> None:
    parts = _parts(np.random.default_rng(1))
    whole = np.concatenate(parts)
    merged = feature_stats.merge([feature_stats.compute(p) for p in parts], whole)
    assert merged.count == len(whole)
    np.testing.assert_array_equal(merged.min, whole.min(axis=0))
    np.testing.assert_array_equal(merged.max, whole.max(axis=0))
    np.testing.assert_allclose(merged.mean, whole.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(merged.std, whole.std(axis=0), rtol=1e-10)
    for q in feature_stats.QUANTILES:
        key = feature_stats.quantile_key(q)
        np.testing.assert_array_equal(merged.quantiles[key], np.quantile(whole, q, axis=0))


def test_averaged_quantiles_would_be_wrong_here() -> None:
    """The data above is one where count-weighted averaging of medians misses the median."""
    parts = _parts(np.random.default_rng(1))
    stats = [feature_stats.compute(p) for p in parts]
    counts = np.array([s.count for s in stats], dtype=float)
    averaged = (
        sum(s.quantiles["q50"] * c for s, c in zip(stats, counts, strict=True)) / counts.sum()
    )
    true = np.median(np.concatenate(parts), axis=0)
    assert not np.allclose(averaged, true, rtol=1e-3)


def test_quantile_keys_and_json() -> None:
    stats = feature_stats.compute(np.arange(10.0).reshape(-1, 1))
    assert [feature_stats.quantile_key(q) for q in feature_stats.QUANTILES] == [
        "q01", "q10", "q50", "q90", "q99",
    ]  # fmt: skip
    document = stats.to_json()
    assert document["count"] == [10]
    assert document["q50"] == [4.5]
    assert document["std"] == [pytest.approx(np.arange(10.0).std())]


def test_merge_refuses_data_of_another_size() -> None:
    part = feature_stats.compute(np.ones((3, 2)))
    with pytest.raises(DatasetError, match="cover 3 frames"):
        feature_stats.merge([part], np.ones((4, 2)))
