"""Backpressure: bounded in-flight bytes per process and a byte-rate quota per device.

Memory must stay bounded whatever the number of devices, so a request reserves its declared body
size before reading it; when the reservation does not fit, the request is refused at once with a
jittered ``Retry-After`` rather than queued. Quotas are token buckets per device over a clock that
tests inject.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from robolake.collector.errors import Backpressure, QuotaExceeded


def jittered(base: float, rng: Callable[[], float] = random.random) -> float:
    """``base`` seconds stretched by up to +50 %, so refused devices do not retry in lockstep."""
    return round(base * (1.0 + 0.5 * rng()), 1)


class InflightBytes:
    """A cap on the bytes of request bodies being received or produced at once."""

    def __init__(self, capacity: int, *, retry_after: float = 1.0) -> None:
        self.capacity = capacity
        self.retry_after = retry_after
        self.used = 0

    def reserve(self, size: int) -> Reservation:
        """Reserve ``size`` bytes or raise :class:`Backpressure`; release with the result."""
        if self.used + size > self.capacity:
            raise Backpressure(
                f"collector busy: {self.used} of {self.capacity} in-flight bytes in use",
                retry_after=jittered(self.retry_after),
            )
        self.used += size
        return Reservation(self, size)


@dataclass
class Reservation:
    """Bytes held in an :class:`InflightBytes`; released exactly once."""

    pool: InflightBytes
    size: int
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.pool.used -= self.size

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class DeviceQuota:
    """Token bucket of bytes per device: ``rate`` bytes/s sustained, ``burst`` bytes at once.

    Buckets of devices idle long enough to be full again are dropped, so the table is bounded by
    the number of devices active in the last ``burst / rate`` seconds.
    """

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def charge(self, device_id: str, size: int) -> None:
        """Take ``size`` bytes from the device's bucket or raise :class:`QuotaExceeded`."""
        if self.rate <= 0:
            return
        now = self._clock()
        tokens, last = self._buckets.get(device_id, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        cost = min(float(size), self.burst)  # one maximal chunk always fits a full bucket
        if tokens < cost:
            wait = (cost - tokens) / self.rate
            self._buckets[device_id] = (tokens, now)
            raise QuotaExceeded(
                f"device {device_id} is over its quota of {self.rate / 1e6:.1f} MB/s",
                retry_after=max(0.1, jittered(wait)),
            )
        self._buckets[device_id] = (tokens - cost, now)
        if len(self._buckets) > 10_000:
            self._forget_full(now)

    def _forget_full(self, now: float) -> None:
        full_after = self.burst / self.rate
        self._buckets = {
            device: (tokens, last)
            for device, (tokens, last) in self._buckets.items()
            if now - last < full_after
        }
