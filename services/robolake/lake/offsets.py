"""The Kafka offsets a table has taken in, kept in its snapshot summaries (the Iceberg Kafka
Connect sink's way).

Every commit of a writer records, for the topic, the full map partition -> next offset (the
first offset not yet in the table), carried forward from the parent snapshot and updated for
the partition committed. The index table's commits also name, per partition, the checkpoint
holding the writer's state at that offset. One map per snapshot means the current snapshot
answers for every partition, however long one of them has been idle.

Maintenance commits (compaction, Spark's ``rewrite_data_files``, erasure) may carry no summary
keys, so the recorded map is the one of the newest snapshot *in the current snapshot's ancestry*
that has it: walking parents skips such commits. ``expire_snapshots`` can still remove every
snapshot that had the keys; robolake's own maintenance therefore copies them forward, and
``docs/tables.md`` says what external maintenance must keep.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.snapshots import ancestors_of

OFFSETS_KEY: Final = "robolake.kafka-offsets.{topic}"
CHECKPOINTS_KEY: Final = "robolake.writer-checkpoints.{topic}"


@dataclass(frozen=True)
class Recorded:
    """A table's recorded position for one topic."""

    offsets: dict[int, int] = field(default_factory=dict)
    checkpoints: dict[int, str] = field(default_factory=dict)
    #: The snapshot the map was found in (None: no snapshot records the topic).
    snapshot_id: int | None = None
    #: Snapshots walked past (maintenance commits without the keys).
    skipped: int = 0


def recorded(metadata: TableMetadata, topic: str) -> Recorded:
    """The newest offsets map for ``topic`` in the current snapshot's ancestry."""
    key = OFFSETS_KEY.format(topic=topic)
    skipped = 0
    for snapshot in ancestors_of(metadata.current_snapshot(), metadata):
        summary = snapshot.summary
        raw = summary.get(key) if summary is not None else None
        if raw is None:
            skipped += 1
            continue
        offsets = {int(p): int(o) for p, o in json.loads(raw).items()}
        raw_checkpoints = summary.get(CHECKPOINTS_KEY.format(topic=topic)) if summary else None
        checkpoints = (
            {int(p): str(k) for p, k in json.loads(raw_checkpoints).items()}
            if raw_checkpoints
            else {}
        )
        return Recorded(offsets, checkpoints, snapshot.snapshot_id, skipped)
    return Recorded(skipped=skipped)


def carried(
    found: Recorded,
    topic: str,
    updates: Mapping[int, int] | None = None,
    checkpoints: Mapping[int, str] | None = None,
) -> dict[str, str]:
    """Summary properties for a new snapshot: the recorded maps with ``updates`` applied."""
    offsets = {**found.offsets, **(updates or {})}
    props = {OFFSETS_KEY.format(topic=topic): _dumps(offsets)}
    names = {**found.checkpoints, **(checkpoints or {})}
    if names:
        props[CHECKPOINTS_KEY.format(topic=topic)] = _dumps(names)
    return props


def carried_all(metadata: TableMetadata) -> dict[str, str]:
    """Every robolake key of the newest snapshot that has them, for maintenance commits to copy
    forward (all topics)."""
    props: dict[str, str] = {}
    for snapshot in ancestors_of(metadata.current_snapshot(), metadata):
        summary = snapshot.summary
        if summary is None:
            continue
        for key, value in summary.additional_properties.items():
            if key.startswith("robolake.") and key not in props:
                props[key] = value
        if props:
            return props
    return props


def _dumps(mapping: Mapping[int, object]) -> str:
    return json.dumps({str(k): v for k, v in sorted(mapping.items())}, separators=(",", ":"))
