"""The episode manifest: parsing and checking what a device declares about an episode.

``schemas/manifest.v1.schema.json`` holds the structural rules; this module adds the rules JSON
Schema cannot say (time order, unique stream names, known stream types, element names where a type
needs them) and turns the document into typed values the collector and writer use.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

import jsonschema
import jsonschema.exceptions

from robolake.episode.documents import load_document
from robolake.episode.errors import ContractViolation
from robolake.episode.ids import is_uuid7, ownership_error, parse_timestamp_ns
from robolake.episode.schemas import contract_validator, load_json
from robolake.episode.stream_types import StreamType, StreamTypeRegistry, default_registry

MANIFEST_SCHEMA_FILE: Final = "manifest.v1.schema.json"
#: Upper bound of a manifest's JSON bytes; real ones are a few KB.
MAX_MANIFEST_BYTES: Final = 1024 * 1024

Scene = Literal["hospital", "mall", "warehouse", "factory", "home", "lab", "other"]
SCENES: Final[tuple[Scene, ...]] = get_args(Scene)


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics of an image or depth stream."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion_model: str = "none"
    distortion: tuple[float, ...] = ()
    frame_id: str | None = None


@dataclass(frozen=True)
class StreamDecl:
    """One declared stream of an episode, resolved against the stream type registry."""

    name: str
    stream_type: StreamType
    rate_hz: float
    elements: tuple[str, ...] | None = None
    camera: CameraIntrinsics | None = None
    metadata: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Rights:
    """Licence and consent of the recording."""

    license: str
    consent: Literal["obtained", "not_required"]
    consent_reference: str | None = None


@dataclass(frozen=True)
class EpisodeManifest:
    """A checked manifest. ``document`` is the JSON object as received, kept for the index."""

    episode_id: str
    capture_point_id: str
    device_id: str
    robot_type: str
    scene: Scene
    task: str
    operator: str
    started_at_ns: int
    ended_at_ns: int
    streams: tuple[StreamDecl, ...]
    tags: tuple[str, ...]
    software: Mapping[str, str]
    rights: Rights | None
    document: Mapping[str, Any]

    def stream(self, name: str) -> StreamDecl:
        """The declared stream ``name``; ``unknown_stream`` if the manifest has none."""
        for decl in self.streams:
            if decl.name == name:
                return decl
        declared = ", ".join(d.name for d in self.streams)
        raise ContractViolation(
            "unknown_stream",
            f"episode {self.episode_id} declares no stream {name!r} (declared: {declared}); "
            "upload chunks only for streams in the manifest",
            stream=name,
        )


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    return contract_validator(load_json(MANIFEST_SCHEMA_FILE))


def check_manifest_document(document: object) -> None:
    """Structural check against the JSON Schema only; ``manifest_invalid`` on the best error."""
    error = jsonschema.exceptions.best_match(_validator().iter_errors(document))
    if error is not None:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        raise ContractViolation(
            "manifest_invalid",
            f"manifest{where}: {error.message}; see schemas/{MANIFEST_SCHEMA_FILE}",
            path=where,
        )


def parse_manifest(
    data: bytes | str | Mapping[str, Any],
    registry: StreamTypeRegistry | None = None,
    *,
    check_owner: bool = True,
) -> EpisodeManifest:
    """Parse and check a manifest (raw JSON or an already-decoded object).

    Raises :class:`ContractViolation` with ``manifest_invalid``, ``unknown_stream_type`` or
    ``episode_not_owned``. ``check_owner=False`` is for manifests accepted earlier and kept in
    the writer's checkpoints: those written before ownership existed must still load, and every
    new record of the episode is checked for ownership anyway.
    """
    registry = registry if registry is not None else default_registry()
    document = _decode(data)
    check_manifest_document(document)
    if not is_uuid7(document["episode_id"]):  # the pattern is checked; this is the time range
        raise ContractViolation(
            "manifest_invalid",
            f"episode_id {document['episode_id']} carries a time after 9999-12-31; generate it "
            "from the current time (robolake.episode.ids.new_episode_id)",
        )
    owner_problem = ownership_error(document["episode_id"], document["device_id"])
    if check_owner and owner_problem is not None:
        raise ContractViolation("episode_not_owned", owner_problem)
    try:
        started = parse_timestamp_ns(document["started_at"])  # pattern already checked
        ended = parse_timestamp_ns(document["ended_at"])
    except ValueError as exc:  # matches the pattern, but is no calendar date (year 0, Feb 30)
        raise ContractViolation(
            "manifest_invalid", f"started_at/ended_at: {exc}; send real RFC 3339 date-times"
        ) from exc
    if ended < started:
        raise ContractViolation(
            "manifest_invalid",
            f"ended_at {document['ended_at']} is before started_at {document['started_at']}",
        )
    streams = tuple(_stream(raw, registry) for raw in document["streams"])
    names = [s.name for s in streams]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ContractViolation(
            "manifest_invalid", f"stream names must be unique; repeated: {', '.join(duplicates)}"
        )
    rights = document.get("rights")
    return EpisodeManifest(
        episode_id=document["episode_id"],
        capture_point_id=document["capture_point_id"],
        device_id=document["device_id"],
        robot_type=document["robot_type"],
        scene=document["scene"],
        task=document["task"],
        operator=document["operator"],
        started_at_ns=started,
        ended_at_ns=ended,
        streams=streams,
        tags=tuple(document.get("tags", ())),
        software=dict(document.get("software", {})),
        rights=Rights(**rights) if rights is not None else None,
        document=document,
    )


def _decode(data: bytes | str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(data, Mapping):
        return data
    if len(data) > MAX_MANIFEST_BYTES:
        raise ContractViolation(
            "manifest_invalid", f"manifest is {len(data)} bytes; the limit is {MAX_MANIFEST_BYTES}"
        )
    document = load_document(data, what="manifest", reason="manifest_invalid")
    if not isinstance(document, dict):
        raise ContractViolation("manifest_invalid", "manifest must be a JSON object")
    return document


def _stream(raw: Mapping[str, Any], registry: StreamTypeRegistry) -> StreamDecl:
    name = raw["name"]
    stream_type = registry.get(raw["type"], raw["type_version"])
    declared_fp = raw.get("fingerprint")
    if declared_fp is not None and declared_fp != stream_type.fingerprint:
        raise ContractViolation(
            "unknown_stream_type",
            f"stream {name!r}: the device's {stream_type.key} has fingerprint {declared_fp}, "
            f"this service's has {stream_type.fingerprint}; the schema files differ -- update "
            "the device or the service",
            stream=name,
        )
    elements = tuple(raw["elements"]) if "elements" in raw else None
    element_fields = [f.name for f in stream_type.fields if f.elements]
    if element_fields and elements is None:
        raise ContractViolation(
            "manifest_invalid",
            f"stream {name!r} of type {stream_type.key} needs 'elements' naming the entries of "
            f"{', '.join(element_fields)} (e.g. joint names)",
            stream=name,
        )
    camera = raw.get("camera")
    return StreamDecl(
        name=name,
        stream_type=stream_type,
        rate_hz=float(raw["rate_hz"]),
        elements=elements,
        camera=_camera(camera) if camera is not None else None,
        metadata=dict(raw["metadata"]) if "metadata" in raw else None,
    )


def _camera(raw: Mapping[str, Any]) -> CameraIntrinsics:
    return CameraIntrinsics(
        width=raw["width"],
        height=raw["height"],
        fx=float(raw["fx"]),
        fy=float(raw["fy"]),
        cx=float(raw["cx"]),
        cy=float(raw["cy"]),
        distortion_model=raw.get("distortion_model", "none"),
        distortion=tuple(float(x) for x in raw.get("distortion", ())),
        frame_id=raw.get("frame_id"),
    )
