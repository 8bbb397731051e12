"""Errors of the writer. Two steer the run loop, in the manner of arroyo's pipeline exceptions:

- :class:`StorageUnavailable` is backpressure: the object store did not take a write. The loop
  pauses consumption, keeps the batch and its offsets uncommitted, and retries after
  ``retry_after`` -- nothing is lost and no one has to step in.
- :class:`PartitionLost`: the group moved a partition away before its offsets were committed;
  the batch is dropped and the new owner replays it (see :mod:`robolake.writer.checkpoints`).
"""

from __future__ import annotations

from robolake.errors import RobolakeError


class WriterError(RobolakeError):
    """Base class of the writer's errors."""


class StorageUnavailable(WriterError):
    """The object store refused or did not answer; retry after ``retry_after`` seconds."""

    retriable = True

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PartitionLost(WriterError):
    """Offsets could not be committed because the partition now belongs to another member."""

    retriable = False


class PartitionFenced(PartitionLost):
    """A table records an offset for the partition that this writer did not expect: another
    writer committed it (this one is a zombie, or lost a race after a rebalance)."""


class CheckpointError(WriterError):
    """A checkpoint object in the bucket cannot be read; the message says what to do."""

    retriable = False
