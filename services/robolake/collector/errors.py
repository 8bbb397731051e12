"""Errors of the collector. Each maps to one RFC 9457 problem type (see ``problems.py``)."""

from __future__ import annotations

from robolake.errors import RobolakeError


class CollectorError(RobolakeError):
    """Base class of the collector's errors."""


class Backpressure(CollectorError):
    """The collector cannot take the request now; the device should retry after ``retry_after``.

    Raised instead of queueing without bound: the HTTP edge turns it into 503 (this process or
    Kafka is saturated) or 429 (this device is over its quota) with a ``Retry-After`` header.
    """

    status = 503
    reason = "overloaded"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QuotaExceeded(Backpressure):
    """One device sends faster than its quota allows."""

    status = 429
    reason = "quota_exceeded"


class KafkaUnavailable(Backpressure):
    """Kafka did not acknowledge in time or refused the record; nothing was acknowledged."""

    reason = "kafka_unavailable"
