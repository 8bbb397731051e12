"""The error root of robolake: every error the package raises on purpose derives from it.

Each subpackage derives its own errors from :class:`RobolakeError`, so callers can catch one type;
messages say what happened and what to do about it.
"""


class RobolakeError(Exception):
    """Base class of every error robolake raises on purpose."""
