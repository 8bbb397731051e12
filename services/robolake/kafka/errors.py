"""Errors of robolake's Kafka clients, each with a ``retriable`` flag in the manner of aiokafka.

Callers decide whether to try again by reading the flag, never by listing exception types: the
collector answers 503 either way, the writer's dead-letter sink retries what is retriable and
gives the rest back to its caller, and a service waiting for Kafka at boot keeps waiting only
while the failure is one that time can fix.
"""

from __future__ import annotations

from robolake.errors import RobolakeError


class KafkaClientError(RobolakeError):
    """Base class of the errors of robolake's Kafka clients."""

    retriable: bool = False


class ProducerStartFailed(KafkaClientError):
    """No producer could be started: the broker did not answer, or refused us.

    ``retriable`` is true when the broker was merely unreachable (it may come up later), false
    when it answered with an error that waiting cannot fix (e.g. an unsupported version or an
    authorisation failure).
    """

    def __init__(self, message: str, *, bootstrap: str, retriable: bool) -> None:
        super().__init__(message)
        self.bootstrap = bootstrap
        self.retriable = retriable


class NotAcknowledged(KafkaClientError):
    """A record was not acknowledged by the in-sync replicas, so it is not stored.

    It may still be stored later (a timed-out request can land), so whoever retries must
    tolerate a duplicate -- the writer deduplicates by key. ``retriable`` is true after
    timeouts, transient broker errors and fatal producer errors (the producer has been renewed,
    so the next send goes out on a fresh one).
    """

    def __init__(self, message: str, *, topic: str, retriable: bool) -> None:
        super().__init__(message)
        self.topic = topic
        self.retriable = retriable


class ProducerClosed(KafkaClientError):
    """The producer is not running: used before ``start()`` or after ``stop()`` (a bug)."""
