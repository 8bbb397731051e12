"""The episode a recording becomes: its deterministic id and its manifest.

**Identity.** A rig's uploader retries whole files, after restarts, sometimes renamed. The
episode id is therefore a function of the recording's content and the device, nothing else: a
UUIDv7 whose time is the recording's first ``t_ns`` (so ids still sort by recording time and the
date partition is the recording's day), whose "random" bits are the first bytes of
``sha256("robolake.recording-episode.v1\\0" + device_id + "\\0" + content_sha256)``, and whose
last 48 bits are the device's owner tag (:func:`robolake.episode.ids.new_episode_id`), which
leaves 26 bits of the hash: two different bags of one device collide only if they also start in
the same millisecond (one in 67 million then). The same bag from the same device is always the
same episode; the collector accepts a repeated
registration with the same manifest (200 instead of 201) and the writer drops chunks it already
stored, so a second upload stores nothing twice.

**Fields a bag cannot know** (capture point, device, robot type, scene, task, operator, tags,
rights, software) come from a sidecar JSON file and flags (flags win), and the whole manifest is
checked by :func:`robolake.episode.manifest.parse_manifest` exactly as for any other upload. The
manifest text is canonical (sorted keys), so the same bag and the same fields give the same
bytes -- which the collector requires of a repeated registration (else ``episode_conflict``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from robolake.episode.ids import format_timestamp_ns, new_episode_id
from robolake.episode.manifest import parse_manifest
from robolake.recordings.errors import RecordingError
from robolake.recordings.rosbag import BagScan

_ID_DOMAIN: Final = b"robolake.recording-episode.v1\0"
#: The version of the conversion; in the manifest's ``software``, so a changed conversion is
#: visible in the data (and a re-upload after it is a conflict, not a silent second copy).
CONVERTER_VERSION: Final = "1"
#: Manifest fields a sidecar (or flags) may give; everything else comes from the recording.
SIDECAR_FIELDS: Final = frozenset(
    {
        "capture_point_id",
        "device_id",
        "robot_type",
        "scene",
        "task",
        "operator",
        "tags",
        "software",
        "rights",
    }
)
_REQUIRED: Final = ("capture_point_id", "device_id", "robot_type", "scene", "task", "operator")
_FLAGS: Final = {
    "capture_point_id": "--capture-point",
    "device_id": "--device-id",
    "robot_type": "--robot-type",
    "scene": "--scene",
    "task": "--task",
    "operator": "--operator",
}


def recording_episode_id(device_id: str, content_sha256: str, started_ns: int) -> str:
    """The episode id of a recording (see the module docstring)."""
    seed = hashlib.sha256(
        _ID_DOMAIN + device_id.encode() + b"\0" + content_sha256.encode()
    ).digest()
    return new_episode_id(device_id, unix_ms=max(started_ns, 0) // 1_000_000, random_bits=seed)


def default_sidecar(path: Path) -> Path:
    """Where a recording's sidecar is looked for: ``DIR/robolake.json`` for a bag directory,
    ``NAME.robolake.json`` next to a bag file."""
    if path.is_dir():
        return path / "robolake.json"
    return path.with_name(path.name + ".robolake.json")


def load_sidecar(path: Path, extra: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A sidecar JSON object with some of :data:`SIDECAR_FIELDS` (and ``extra``: what a
    format cannot record itself, such as an HDF5 file's frame rate)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RecordingError(f"sidecar {path}: cannot read it ({exc.strerror})") from exc
    except ValueError as exc:
        raise RecordingError(f"sidecar {path}: not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise RecordingError(f"sidecar {path}: must be a JSON object of manifest fields")
    unknown = set(document) - SIDECAR_FIELDS - extra
    if unknown:
        raise RecordingError(
            f"sidecar {path}: unknown field(s) {sorted(unknown)}; a sidecar gives only "
            f"{', '.join(sorted(SIDECAR_FIELDS | extra))} (the rest comes from the recording)"
        )
    return document


def build_manifest(scan: BagScan, fields: Mapping[str, Any], *, source: str = "") -> str:
    """The canonical manifest text of ``scan`` with ``fields`` (sidecar merged with flags)."""
    streams = []
    for name, stream in sorted(scan.streams.items()):
        decl: dict[str, Any] = {
            "name": name,
            "type": stream.converter.stream_type,
            "type_version": 1,
            "rate_hz": stream.rate_hz,
        }
        elements = stream.converter.elements()
        if elements:
            decl["elements"] = elements
        if stream.camera is not None:
            decl["camera"] = stream.camera
        metadata = {"ros_topic": stream.rule.topic, "ros_type": stream.rule.msgtype}
        if stream.frame_id:
            metadata["frame_id"] = stream.frame_id[:1024]
        decl["metadata"] = metadata
        streams.append(decl)
    return recording_manifest(
        streams,
        fields,
        content_sha256=scan.digest,
        t_min=scan.t_min,
        t_max=scan.t_max,
        source=source,
        what="a bag",
    )


def recording_manifest(
    streams: list[dict[str, Any]],
    fields: Mapping[str, Any],
    *,
    content_sha256: str,
    t_min: int,
    t_max: int,
    source: str = "",
    what: str = "a recording",
) -> str:
    """The canonical manifest of any recording format: its stream declarations, the fields
    from the sidecar and flags, and the id from (content, device) -- one rule for every format,
    so a re-upload is the same episode whatever the file was."""
    missing = [k for k in _REQUIRED if not fields.get(k)]
    if missing:
        hints = ", ".join(f"{k} ({_FLAGS[k]})" for k in missing)
        raise RecordingError(
            f"the manifest needs {hints}, which {what} cannot know: pass the flags or put the "
            f"fields in a sidecar JSON file{f' ({source})' if source else ''}"
        )
    device_id = str(fields["device_id"])
    software = {"robolake.recordings": CONVERTER_VERSION, **dict(fields.get("software") or {})}
    document: dict[str, Any] = {
        "manifest_version": 1,
        "episode_id": recording_episode_id(device_id, content_sha256, t_min),
        "capture_point_id": fields["capture_point_id"],
        "device_id": device_id,
        "robot_type": fields["robot_type"],
        "scene": fields["scene"],
        "task": fields["task"],
        "operator": fields["operator"],
        "started_at": format_timestamp_ns(t_min),
        "ended_at": format_timestamp_ns(t_max),
        "streams": streams,
        "software": software,
    }
    if fields.get("tags"):
        document["tags"] = sorted(set(fields["tags"]))
    if fields.get("rights"):
        document["rights"] = fields["rights"]
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    parse_manifest(text)  # the contract's checks, as for every upload (ContractViolation)
    return text
