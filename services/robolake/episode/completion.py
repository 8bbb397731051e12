"""The completion a device sends after its last chunk: per-stream chunk and row counts.

With it the writer can tell a complete episode from one with missing chunks without trusting
timing; ``schemas/complete.v1.schema.json`` is the structural contract.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import jsonschema
import jsonschema.exceptions

from robolake.episode.documents import load_document
from robolake.episode.errors import ContractViolation
from robolake.episode.manifest import EpisodeManifest
from robolake.episode.schemas import contract_validator, load_json

COMPLETE_SCHEMA_FILE: Final = "complete.v1.schema.json"


@dataclass(frozen=True)
class StreamCount:
    """What the device says it sent for one stream."""

    chunks: int
    rows: int


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    return contract_validator(load_json(COMPLETE_SCHEMA_FILE))


def parse_completion(
    data: bytes | str | Mapping[str, Any], manifest: EpisodeManifest | None = None
) -> dict[str, StreamCount]:
    """Parse a completion; with ``manifest``, every declared stream must be counted, no other.

    Raises ``manifest_invalid`` (the completion belongs to the manifest's contract) or
    ``unknown_stream``.
    """
    document = (
        data
        if isinstance(data, Mapping)
        else load_document(data, what="completion", reason="manifest_invalid")
    )
    error = jsonschema.exceptions.best_match(_validator().iter_errors(document))
    if error is not None:
        raise ContractViolation(
            "manifest_invalid",
            f"completion: {error.message}; see schemas/{COMPLETE_SCHEMA_FILE}",
        )
    counts = {
        name: StreamCount(chunks=c["chunks"], rows=c["rows"])
        for name, c in document["streams"].items()
    }
    if manifest is not None:
        for name in counts:
            manifest.stream(name)  # unknown_stream if undeclared
        missing = sorted({s.name for s in manifest.streams} - counts.keys())
        if missing:
            raise ContractViolation(
                "manifest_invalid",
                f"completion lacks counts for declared streams: {', '.join(missing)}; "
                "send zero counts for streams that recorded nothing",
            )
    return counts
