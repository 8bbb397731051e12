"""Errors of the table layer."""

from __future__ import annotations

from robolake.errors import RobolakeError


class LakeError(RobolakeError):
    """The catalog or a table is not what robolake expects."""


class CatalogUnavailable(LakeError):
    """The catalog did not answer (refused, timed out, 5xx): retry later, nothing is lost."""


class Fenced(LakeError):
    """Another writer moved a partition's recorded offset since this one read it.

    Raised instead of committing: this writer lost the partition (a zombie after a rebalance)
    or another writer's commit landed first; either way its files must not land.
    """
