"""Errors of the dataset readers: one root, messages that say what to do."""

from __future__ import annotations

from robolake.errors import RobolakeError


class DatasetError(RobolakeError):
    """The dataset cannot be opened, an episode or stream is not there, or a request is invalid."""


class MissingExtraError(DatasetError):
    """An optional dependency (PyTorch, PyAV, Hugging Face ``datasets``) is not installed."""

    def __init__(self, package: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the {package!r} package, which is not installed; install the ML "
            "extra with `pip install 'robolake[ml]'`"
        )
        self.package = package
