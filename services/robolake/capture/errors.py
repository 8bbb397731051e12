"""Errors of the capture client."""

from __future__ import annotations

from robolake.errors import RobolakeError


class CaptureError(RobolakeError):
    """Base class of the capture client's errors."""


class SpoolFull(CaptureError):
    """The spool reached its cap: the device is offline for too long or uploads too slowly."""


class Rejected(CaptureError):
    """The collector refused a request for good (a 4xx that retrying cannot fix).

    ``reason`` is the problem reason from the collector (e.g. ``schema_mismatch``).
    """

    def __init__(self, reason: str, status: int, detail: str) -> None:
        super().__init__(f"{status} {reason}: {detail}")
        self.reason = reason
        self.status = status
        self.detail = detail


class Unauthorized(Rejected):
    """The device token is unknown or revoked: nothing can be uploaded until it is replaced."""


class GaveUp(CaptureError):
    """A retriable failure lasted past the upload deadline."""
