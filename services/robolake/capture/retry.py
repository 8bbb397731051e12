"""Backoff between upload attempts: exponential with full jitter, honouring ``Retry-After``.

Full jitter (a uniform draw up to the exponential bound) keeps a thousand devices that failed
together from retrying together. A server's ``Retry-After`` is a floor: the device waits at least
that long, plus a little jitter of its own.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Delay policy: ``base * 2**attempt`` capped at ``cap`` seconds, jittered."""

    base: float = 0.25
    cap: float = 30.0

    def delay(
        self,
        attempt: int,
        retry_after: float | None = None,
        rng: Callable[[], float] = random.random,
    ) -> float:
        bound = min(self.cap, self.base * float(1 << min(attempt, 30)))
        jittered = bound * rng()
        if retry_after is not None:
            return max(retry_after, 0.0) + min(jittered, 1.0)
        return jittered


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the delay-seconds form; dates are not used by robolake)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
