"""Errors of the recording converters: one root, each message says what broke and what to do."""

from __future__ import annotations

from robolake.errors import RobolakeError


class RecordingError(RobolakeError):
    """Base class of the recording converters' errors: nothing was registered or spooled."""


class MappingError(RecordingError):
    """The mapping file (topic -> stream) is malformed or asks for something impossible."""


class CorruptRecording(RecordingError):
    """The recording file is truncated or damaged; the message names the byte offset."""


class UnsupportedMessage(RecordingError):
    """A mapped topic carries a message robolake cannot turn into its stream type (an image
    encoding it does not know, a frame whose size disagrees with its header, ...)."""
