"""A recording ready to upload: its manifest, its row batches and its report (what the CLI uses)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from robolake.recordings.errors import RecordingError
from robolake.recordings.manifest import build_manifest, default_sidecar, load_sidecar
from robolake.recordings.mapping import DEFAULT_MAPPING, load_mapping
from robolake.recordings.rosbag import BagScan, batches, is_bag, scan


class PreparedRecording(Protocol):
    """What the upload needs of any converted recording (a bag, an HDF5 episode): checked
    whole before anything is registered, so the CLI handles every format alike."""

    manifest: str

    def batches(self, skip: Mapping[str, int] | None = None) -> Iterator[tuple[str, pa.Table]]:
        """``(stream, rows)`` batches, leaving out ``skip[stream]`` rows already spooled."""
        ...

    def check_chunk_limit(self, max_chunk_bytes: int) -> None:
        """Refuse a row bigger than a chunk before registration."""
        ...

    def report(self) -> dict[str, Any]:
        """The upload report's ``recording`` part: streams and what was not uploaded."""
        ...


@dataclass
class Recording:
    """A scanned bag: everything is checked; :meth:`batches` streams its rows."""

    scan: BagScan
    manifest: str
    scan_seconds: float

    def batches(self, skip: Mapping[str, int] | None = None) -> Iterator[tuple[str, pa.Table]]:
        """``(stream, rows)`` in order, skipping ``skip[stream]`` rows already spooled."""
        return batches(self.scan, skip)

    def check_chunk_limit(self, max_chunk_bytes: int) -> None:
        """Refuse, before anything is registered, a bag with a message bigger than a chunk.

        A row is never split across chunks, so such a frame would fail the upload halfway
        (``chunk_too_large``) after the episode was registered and its first chunks spooled.
        The serialized message's size stands in for the row's (the row is the same pixels or
        bytes with a few fields less).
        """
        for name, stream in sorted(self.scan.streams.items()):
            if stream.largest_bytes > max_chunk_bytes:
                raise RecordingError(
                    f"stream {name} (topic {stream.rule.topic}) has a message of "
                    f"{stream.largest_bytes} bytes, over the {max_chunk_bytes}-byte chunk limit: "
                    "a row must fit one chunk; raise --max-chunk-bytes (the collector takes up "
                    "to 4 MiB by default) or ignore the topic in the mapping file"
                )

    def report(self) -> dict[str, Any]:
        """What the upload report says about the conversion: streams, and what was not uploaded."""
        return {
            "source": str(self.scan.path),
            "content_sha256": self.scan.digest,
            "bytes": self.scan.size_bytes,
            "scan_seconds": round(self.scan_seconds, 3),
            "streams": {
                name: {
                    "topic": s.rule.topic,
                    "ros_type": s.rule.msgtype,
                    "type": s.converter.stream_type,
                    "rows": s.messages,
                    "log_time_rows": s.log_time_rows,
                    "camera": s.camera is not None,
                }
                for name, s in sorted(self.scan.streams.items())
            },
            "unmapped_topics": [
                {
                    "topic": u.topic,
                    "ros_type": u.msgtype,
                    "messages": u.messages,
                    "reason": u.reason,
                }
                for u in self.scan.resolution.unmapped
            ],
            "mapped_topics_not_in_bag": self.scan.resolution.missing,
        }


def prepare(
    path: Path,
    *,
    fields: Mapping[str, Any],
    mapping: Path | None = None,
    sidecar: Path | None = None,
) -> Recording:
    """Scan the bag at ``path`` and build its manifest; ``fields`` (flags) win over the sidecar
    (``sidecar``, else :func:`default_sidecar` when it exists)."""
    if not is_bag(path):
        raise RecordingError(
            f"{path} is not a ROS 2 bag: expected a .mcap or .db3 file, or a rosbag2 directory "
            "with metadata.yaml"
        )
    topic_mapping = load_mapping(mapping) if mapping is not None else DEFAULT_MAPPING
    side = sidecar or default_sidecar(path)
    merged: dict[str, Any] = {}
    if sidecar is not None or side.is_file():
        merged.update(load_sidecar(side))
    merged.update({k: v for k, v in fields.items() if v not in (None, [], "")})
    began = time.perf_counter()
    result = scan(path, topic_mapping)
    manifest = build_manifest(result, merged, source=str(side))
    return Recording(result, manifest, time.perf_counter() - began)
