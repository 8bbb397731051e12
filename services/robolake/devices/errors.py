"""The device registry's one error root."""

from __future__ import annotations

from robolake.errors import RobolakeError


class DeviceRegistryError(RobolakeError):
    """The registry file is unreadable, or a management command is invalid."""
