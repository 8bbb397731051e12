"""Errors of the local stack."""

from robolake.errors import RobolakeError


class StackError(RobolakeError):
    """A component of the local stack could not be installed, started or stopped."""
