from __future__ import annotations

import pytest

from robolake.collector.errors import Backpressure, QuotaExceeded
from robolake.collector.limits import DeviceQuota, InflightBytes, jittered


def test_inflight_bytes_refuse_past_capacity_and_release_once() -> None:
    pool = InflightBytes(100, retry_after=1.0)
    first = pool.reserve(60)
    with pytest.raises(Backpressure) as info:
        pool.reserve(41)
    assert 1.0 <= info.value.retry_after <= 1.5
    assert info.value.status == 503
    first.release()
    first.release()  # idempotent
    assert pool.used == 0
    with pool.reserve(100):
        assert pool.used == 100
    assert pool.used == 0


def test_device_quota_is_a_token_bucket_over_an_injected_clock() -> None:
    now = [0.0]
    quota = DeviceQuota(rate=100.0, burst=200.0, clock=lambda: now[0])
    quota.charge("a", 200)
    with pytest.raises(QuotaExceeded) as info:
        quota.charge("a", 50)
    assert info.value.status == 429
    assert 0.5 <= info.value.retry_after <= 0.75 + 0.1
    quota.charge("b", 200)  # other devices are independent
    now[0] = 0.5
    quota.charge("a", 50)


def test_a_maximal_chunk_always_fits_a_full_bucket() -> None:
    quota = DeviceQuota(rate=1.0, burst=10.0, clock=lambda: 0.0)
    quota.charge("a", 1_000_000)  # larger than the burst: charged as a full bucket
    with pytest.raises(QuotaExceeded):
        quota.charge("a", 1)


def test_zero_rate_disables_the_quota() -> None:
    quota = DeviceQuota(rate=0.0, burst=0.0)
    for _ in range(100):
        quota.charge("a", 10**9)


def test_jitter_spreads_retries() -> None:
    assert jittered(2.0, rng=lambda: 0.0) == 2.0
    assert jittered(2.0, rng=lambda: 1.0) == 3.0
