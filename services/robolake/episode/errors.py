"""Errors of the episode contract, and the closed set of reasons data is rejected for.

Two kinds of failure, kept apart because they call for different people:

- :class:`ContractError`: the contract files themselves are missing or broken -- an operator or
  developer must fix the deployment; no data can be judged meanwhile.
- :class:`ContractViolation`: a manifest, chunk or Kafka record breaks the contract. It carries a
  stable machine-readable ``reason`` (the collector turns it into a problem+json type, the writer
  into a dead-letter header) and a ``message`` telling the sender what to do.

:data:`Reason` is the one list of reasons; ``schemas/validation-reasons.v1.json`` documents the same
list with HTTP statuses, and a test keeps the two equal.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

from robolake.errors import RobolakeError

Reason = Literal[
    "manifest_invalid",
    "unknown_stream_type",
    "unknown_stream",
    "chunk_too_large",
    "chunk_empty",
    "malformed_arrow",
    "schema_mismatch",
    "t_ns_null",
    "t_ns_decreasing",
    "t_ns_out_of_range",
    "field_null",
    "element_count_mismatch",
    "image_too_large",
    "value_not_allowed",
    "checksum_mismatch",
    "episode_not_owned",
    "record_invalid",
]

#: Every reason, in the order of the literal.
REASONS: Final[tuple[Reason, ...]] = get_args(Reason)
#: Reasons where sending the same bytes again can succeed (the damage happened in transit).
RETRIABLE_REASONS: Final[frozenset[Reason]] = frozenset({"checksum_mismatch"})


class EpisodeError(RobolakeError):
    """Base class of the episode contract's errors."""


class ContractError(EpisodeError):
    """The contract files in ``schemas/`` are missing, unreadable or inconsistent."""


class ContractViolation(EpisodeError):
    """Data breaks the episode contract.

    ``reason`` is stable and machine-readable; ``message`` is for the human who must fix the
    sender; ``context`` holds a few values that locate the problem (stream, row, field).
    """

    def __init__(self, reason: Reason, message: str, **context: object) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason: Reason = reason
        self.message = message
        self.context: dict[str, object] = context

    @property
    def retriable(self) -> bool:
        """Whether sending the same data again can succeed."""
        return self.reason in RETRIABLE_REASONS
