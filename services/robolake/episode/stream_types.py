"""The stream type registry: every ``schemas/stream_types/<name>.v<version>.json`` file.

A stream type is a table description (see :mod:`robolake.episode.tables`) whose first field is
``t_ns``, a non-null int64 of nanoseconds since the Unix epoch. Adding a type -- or a new version
of one -- is adding a file; the registry discovers files at load time, so no code changes.
Versions are never edited in place: the fingerprint in every Kafka record lets the writer notice
if one was.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

import pyarrow as pa

from robolake.episode.errors import ContractError, ContractViolation
from robolake.episode.schemas import schemas_dir
from robolake.episode.tables import TableSpec, load_table_file

logger = logging.getLogger(__name__)

#: Directory of stream type files, relative to ``schemas/``.
STREAM_TYPES_DIR: Final = "stream_types"
#: Name of the time column every stream type starts with.
TIME_FIELD: Final = "t_ns"

#: A stream type is a table description with the t_ns rule; the alias says which is meant.
StreamType = TableSpec


def check_stream_type(spec: TableSpec) -> TableSpec:
    """Enforce what makes a table description a stream type: ``t_ns`` int64, non-null, first."""
    first = spec.fields[0]
    if first.name != TIME_FIELD or first.arrow_type != pa.int64() or first.nullable:
        raise ContractError(
            f"stream type {spec.key}: the first field must be {TIME_FIELD!r}, int64, "
            f"nullable false (found {first.name!r}, {first.type_text}, nullable {first.nullable})"
        )
    return spec


class StreamTypeRegistry:
    """All known stream type versions, by ``(name, version)`` and by fingerprint."""

    def __init__(self, types: Iterable[StreamType]) -> None:
        self._by_key: dict[tuple[str, int], StreamType] = {}
        self._by_fingerprint: dict[str, StreamType] = {}
        for spec in types:
            check_stream_type(spec)
            if (spec.name, spec.version) in self._by_key:
                raise ContractError(f"stream type {spec.key} is defined twice")
            other = self._by_fingerprint.get(spec.fingerprint)
            if other is not None:
                raise ContractError(f"{spec.key} and {other.key} have the same fingerprint")
            self._by_key[(spec.name, spec.version)] = spec
            self._by_fingerprint[spec.fingerprint] = spec

    @classmethod
    def load(cls, directory: Path | None = None) -> StreamTypeRegistry:
        """Read every ``*.json`` in ``directory`` (default ``schemas/stream_types``)."""
        directory = directory if directory is not None else schemas_dir() / STREAM_TYPES_DIR
        files = sorted(directory.glob("*.json"))
        if not files:
            raise ContractError(f"no stream type files in {directory}")
        registry = cls(load_table_file(path) for path in files)
        logger.debug("loaded %d stream type versions from %s", len(registry), directory)
        return registry

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[StreamType]:
        return iter(sorted(self._by_key.values(), key=lambda s: (s.name, s.version)))

    def get(self, name: str, version: int) -> StreamType:
        """The type version; ``unknown_stream_type`` if no file defines it."""
        spec = self._by_key.get((name, version))
        if spec is None:
            known = ", ".join(s.key for s in self)
            raise ContractViolation(
                "unknown_stream_type",
                f"stream type {name}.v{version} is not defined; use one of: {known}",
                type=name,
                type_version=version,
            )
        return spec

    def by_fingerprint(self, fp: str) -> StreamType:
        """The type version with fingerprint ``fp``; ``unknown_stream_type`` if none."""
        spec = self._by_fingerprint.get(fp)
        if spec is None:
            raise ContractViolation(
                "unknown_stream_type",
                f"no stream type has fingerprint {fp!r}; the sender's schema files differ from "
                "this service's -- update one side",
                fingerprint=fp,
            )
        return spec


@functools.cache
def default_registry() -> StreamTypeRegistry:
    """The registry of ``schemas/stream_types``, loaded once per process."""
    return StreamTypeRegistry.load()
