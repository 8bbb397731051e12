from __future__ import annotations

from robolake.capture.retry import Backoff, parse_retry_after


def test_backoff_grows_exponentially_up_to_the_cap_with_full_jitter() -> None:
    backoff = Backoff(base=0.5, cap=8.0)
    highs = [backoff.delay(a, rng=lambda: 1.0) for a in range(8)]
    assert highs == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    assert backoff.delay(3, rng=lambda: 0.0) == 0.0


def test_retry_after_is_a_floor() -> None:
    backoff = Backoff(base=0.5, cap=8.0)
    assert backoff.delay(0, retry_after=3.0, rng=lambda: 0.0) == 3.0
    assert 3.0 <= backoff.delay(6, retry_after=3.0, rng=lambda: 1.0) <= 4.0


def test_parse_retry_after() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert parse_retry_after("-5") == 0.0
