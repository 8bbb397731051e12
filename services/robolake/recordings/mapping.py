"""Which bag topic becomes which stream: the built-in defaults and the mapping file.

A mapping file is YAML or JSON (by its suffix)::

    version: 1
    time: header            # header (default) | log_time, for every topic unless it says
    map_defaults: true      # topics of a type with a built-in converter map without an entry
    topics:
      /joint_states: {stream: arm_joints}
      /instruction: {stream: instruction, kind: instruction}
      /camera/color/image_raw: {stream: wrist_rgb, camera_info: /camera/color/camera_info}
      /camera/depth/image_rect_raw: {stream: wrist_depth, depth_scale: 0.001}
      /tf: ignore

A topic's stream type follows from its ROS type (:data:`CONVERTERS`); a raw ``Image`` topic is
an ``image`` stream for rgb8/bgr8/mono8 and a ``depth_image`` stream for 16UC1/32FC1, decided by
its first message. ``CameraInfo`` topics make no stream: they fill the ``camera`` intrinsics of
the image stream in the same namespace (``/cam/camera_info`` for ``/cam/image_raw`` and
``/cam/image_raw/compressed``) or of the stream whose entry names them. Everything else is
*unmapped* and listed in the upload report with the reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from robolake.episode.stream_types import default_registry
from robolake.recordings.errors import MappingError

TimeSource = Literal["header", "log_time"]

#: ROS 2 message type -> the stream type its converter makes ("intrinsics": no stream, the
#: manifest's camera block of an image stream; "image": image or depth_image by encoding).
CONVERTERS: Final[Mapping[str, str]] = {
    "sensor_msgs/msg/JointState": "joint_state",
    "sensor_msgs/msg/Imu": "imu",
    "sensor_msgs/msg/Image": "image",
    "sensor_msgs/msg/CompressedImage": "image",
    "sensor_msgs/msg/CameraInfo": "intrinsics",
    "geometry_msgs/msg/PoseStamped": "pose",
    "std_msgs/msg/String": "event",
}
CAMERA_INFO: Final = "sensor_msgs/msg/CameraInfo"
IMAGE_TYPES: Final = frozenset({"sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"})
#: ROS depth images in 16UC1 are millimetres by convention (REP 118).
DEFAULT_DEPTH_SCALE: Final = 0.001
_STREAM_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_TOPIC_KEYS: Final = frozenset({"stream", "time", "kind", "depth_scale", "camera_info", "ignore"})
_FILE_KEYS: Final = frozenset({"version", "time", "map_defaults", "topics"})


def _event_kinds() -> tuple[str, ...]:
    spec = default_registry().get("event", 1)
    kind = next(f for f in spec.fields if f.name == "kind")
    assert kind.constraints is not None
    assert kind.constraints.enum is not None
    return kind.constraints.enum


@dataclass(frozen=True)
class TopicEntry:
    """One ``topics`` entry of a mapping file."""

    stream: str | None = None
    time: TimeSource | None = None
    kind: str | None = None
    depth_scale: float | None = None
    camera_info: str | None = None
    ignore: bool = False


@dataclass(frozen=True)
class TopicMapping:
    """A parsed mapping file (or the defaults: :data:`DEFAULT_MAPPING`)."""

    time: TimeSource = "header"
    map_defaults: bool = True
    topics: Mapping[str, TopicEntry] = field(default_factory=dict)
    source: str = "the built-in defaults"


DEFAULT_MAPPING: Final = TopicMapping()


@dataclass(frozen=True)
class TopicRule:
    """How one topic is converted."""

    topic: str
    msgtype: str
    stream: str  # the stream name; for CameraInfo topics the image stream it describes
    time: TimeSource
    kind: str = "note"
    depth_scale: float = DEFAULT_DEPTH_SCALE
    camera_info: str | None = None

    @property
    def intrinsics(self) -> bool:
        return self.msgtype == CAMERA_INFO


@dataclass(frozen=True)
class Unmapped:
    """A topic that is not uploaded, and why; listed in the upload report."""

    topic: str
    msgtype: str
    messages: int
    reason: str


@dataclass(frozen=True)
class Resolution:
    """The mapping applied to one bag's topics."""

    rules: list[TopicRule]
    unmapped: list[Unmapped]
    #: Topics the mapping file names that the bag does not have.
    missing: list[str]


def stream_name_for(topic: str) -> str:
    """A topic's default stream name: ``/camera/color/image_raw`` -> ``camera_color_image_raw``."""
    name = re.sub(r"[^a-z0-9]+", "_", topic.lower()).strip("_")
    if not name or not name[0].isalpha():
        name = f"t_{name}"
    return name[:64].rstrip("_")


def load_mapping(path: Path) -> TopicMapping:
    """Read and check a mapping file; every problem is a :class:`MappingError` naming the key."""
    return parse_mapping(read_mapping_document(path), source=str(path))


def read_mapping_document(path: Path) -> Any:
    """A mapping file's document, YAML or JSON by its suffix (bags' and HDF5 files' alike)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"mapping file {path}: cannot read it ({exc.strerror})") from exc
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            from ruamel.yaml import YAML
            from ruamel.yaml.error import YAMLError

            try:
                document: Any = YAML(typ="safe", pure=True).load(text)
            except YAMLError as exc:
                raise MappingError(f"mapping file {path}: not valid YAML: {exc}") from exc
        else:
            document = json.loads(text)
    except ValueError as exc:
        raise MappingError(f"mapping file {path}: not valid JSON: {exc}") from exc
    return document


def parse_mapping(document: Any, *, source: str = "mapping") -> TopicMapping:
    """Check a mapping document (already parsed from YAML/JSON)."""
    where = f"mapping file {source}"
    if not isinstance(document, dict):
        raise MappingError(
            f"{where}: the top level must be a mapping with 'version: 1' and 'topics'"
        )
    unknown = set(document) - _FILE_KEYS
    if unknown:
        raise MappingError(
            f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_FILE_KEYS)}"
        )
    if document.get("version") != 1:
        raise MappingError(f"{where}: 'version' must be 1 (found {document.get('version')!r})")
    time = _time(document.get("time", "header"), f"{where}: 'time'")
    map_defaults = document.get("map_defaults", True)
    if not isinstance(map_defaults, bool):
        raise MappingError(f"{where}: 'map_defaults' must be true or false")
    raw_topics = document.get("topics") or {}
    if not isinstance(raw_topics, dict):
        raise MappingError(f"{where}: 'topics' must map topic names to entries")
    topics = {}
    for topic, raw in raw_topics.items():
        topics[str(topic)] = _entry(str(topic), raw, f"{where}: topic {topic!r}")
    return TopicMapping(time=time, map_defaults=map_defaults, topics=topics, source=source)


def _time(value: Any, where: str) -> TimeSource:
    if value == "header":
        return "header"
    if value == "log_time":
        return "log_time"
    raise MappingError(f"{where} must be 'header' or 'log_time' (found {value!r})")


def _entry(topic: str, raw: Any, where: str) -> TopicEntry:
    if not topic.startswith("/"):
        raise MappingError(f"{where}: a topic name starts with '/'")
    if raw == "ignore":
        return TopicEntry(ignore=True)
    if raw is None:
        return TopicEntry()
    if not isinstance(raw, dict):
        raise MappingError(f"{where}: an entry is 'ignore' or a mapping of {sorted(_TOPIC_KEYS)}")
    unknown = set(raw) - _TOPIC_KEYS
    if unknown:
        raise MappingError(
            f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_TOPIC_KEYS)}"
        )
    stream = raw.get("stream")
    if stream is not None and not (isinstance(stream, str) and _STREAM_NAME.fullmatch(stream)):
        raise MappingError(
            f"{where}: stream {stream!r} is not a stream name ([a-z][a-z0-9_]*, at most 64)"
        )
    kind = raw.get("kind")
    kinds = _event_kinds()
    if kind is not None and kind not in kinds:
        raise MappingError(f"{where}: kind {kind!r} is not an event kind ({', '.join(kinds)})")
    scale = raw.get("depth_scale")
    if scale is not None and (
        isinstance(scale, bool) or not isinstance(scale, int | float) or not scale > 0
    ):
        raise MappingError(f"{where}: depth_scale must be a positive number of metres per unit")
    camera_info = raw.get("camera_info")
    if camera_info is not None and not (
        isinstance(camera_info, str) and camera_info.startswith("/")
    ):
        raise MappingError(f"{where}: camera_info must be a topic name starting with '/'")
    ignore = raw.get("ignore", False)
    if not isinstance(ignore, bool):
        raise MappingError(f"{where}: ignore must be true or false")
    return TopicEntry(
        stream=stream,
        time=_time(raw["time"], f"{where}: time") if "time" in raw else None,
        kind=kind,
        depth_scale=float(scale) if scale is not None else None,
        camera_info=camera_info,
        ignore=ignore,
    )


def _namespace(topic: str) -> str:
    """``/cam/image_raw/compressed`` and ``/cam/camera_info`` -> ``/cam``."""
    if topic.endswith("/compressed"):
        topic = topic[: -len("/compressed")]
    return topic.rpartition("/")[0]


def resolve(mapping: TopicMapping, topics: Mapping[str, tuple[str, int]]) -> Resolution:
    """Apply ``mapping`` to a bag's ``topics`` (name -> (ROS type, message count))."""
    where = f"mapping ({mapping.source})"
    rules: list[TopicRule] = []
    unmapped: list[Unmapped] = []
    infos: list[tuple[str, str, int, TopicEntry]] = []
    for topic, (msgtype, count) in sorted(topics.items()):
        entry = mapping.topics.get(topic)
        if entry is not None and entry.ignore:
            unmapped.append(Unmapped(topic, msgtype, count, "ignored by the mapping file"))
            continue
        if msgtype not in CONVERTERS:
            if entry is not None:
                raise MappingError(
                    f"{where}: topic {topic} is mapped, but robolake has no converter for its "
                    f"type {msgtype}; convertible types: {', '.join(sorted(CONVERTERS))} "
                    "(or mark the topic 'ignore')"
                )
            unmapped.append(Unmapped(topic, msgtype, count, f"no converter for {msgtype}"))
            continue
        if entry is None and not mapping.map_defaults:
            unmapped.append(
                Unmapped(topic, msgtype, count, "not in the mapping file (map_defaults: false)")
            )
            continue
        entry = entry or TopicEntry()
        if msgtype == CAMERA_INFO:
            infos.append((topic, msgtype, count, entry))
            continue
        if entry.camera_info is not None and msgtype not in IMAGE_TYPES:
            raise MappingError(f"{where}: topic {topic}: camera_info applies to image topics only")
        if entry.depth_scale is not None and msgtype != "sensor_msgs/msg/Image":
            raise MappingError(f"{where}: topic {topic}: depth_scale applies to raw Image topics")
        if entry.kind is not None and CONVERTERS[msgtype] != "event":
            raise MappingError(f"{where}: topic {topic}: kind applies to event (String) topics")
        rules.append(
            TopicRule(
                topic=topic,
                msgtype=msgtype,
                stream=entry.stream or stream_name_for(topic),
                time=entry.time or mapping.time,
                kind=entry.kind or "note",
                depth_scale=entry.depth_scale or DEFAULT_DEPTH_SCALE,
                camera_info=entry.camera_info,
            )
        )
    seen: dict[str, str] = {}
    for rule in rules:
        if rule.stream in seen:
            raise MappingError(
                f"{where}: topics {seen[rule.stream]} and {rule.topic} both become stream "
                f"{rule.stream!r}; give one of them another 'stream' in the mapping file"
            )
        seen[rule.stream] = rule.topic
    # Camera info: the image stream that names it, else the image stream in its namespace.
    for topic, msgtype, count, entry in infos:
        named = [r for r in rules if r.camera_info == topic]
        nearby = [
            r
            for r in rules
            if r.msgtype in IMAGE_TYPES and r.camera_info is None
            and _namespace(r.topic) == _namespace(topic)
        ]  # fmt: skip
        targets = named or nearby
        if not targets:
            unmapped.append(
                Unmapped(topic, msgtype, count, "camera info with no image stream in its namespace")
            )
            continue
        for target in targets:
            rules.append(TopicRule(topic, msgtype, target.stream, entry.time or mapping.time))
    for rule in rules:
        if rule.camera_info is not None and rule.camera_info not in topics:
            raise MappingError(
                f"{where}: topic {rule.topic} names camera_info {rule.camera_info}, which the bag "
                "does not have"
            )
    missing = sorted(t for t in mapping.topics if t not in topics)
    return Resolution(rules=rules, unmapped=unmapped, missing=missing)


# --- HDF5 episodes: dataset paths -> streams ----------------------------------------------------

#: What an HDF5 dataset can become: a field of one of the contract's stream types. Several
#: datasets fill one stream (qpos, qvel and effort are one ``joint_state`` stream's fields).
DATASET_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "joint_state": ("position", "velocity", "effort"),
    "action": ("action",),
    "image": ("data",),
}
_DATASET_KEYS: Final = frozenset({"stream", "type", "field", "joint_names", "ignore"})
_HDF5_FILE_KEYS: Final = frozenset(
    {"version", "map_defaults", "rate_hz", "joint_names", "datasets"}
)


@dataclass(frozen=True)
class DatasetEntry:
    """One ``datasets`` entry of an HDF5 mapping file."""

    stream: str | None = None
    type: str | None = None
    field: str | None = None
    joint_names: tuple[str, ...] | None = None
    ignore: bool = False


@dataclass(frozen=True)
class DatasetMapping:
    """A parsed HDF5 mapping file; paths are relative to the episode's group (the file's root
    for ACT, ``data/demo_N`` for robomimic), without a leading ``/``."""

    map_defaults: bool = True
    rate_hz: float | None = None
    joint_names: tuple[str, ...] | None = None
    datasets: Mapping[str, DatasetEntry] = field(default_factory=dict)
    source: str = "the built-in defaults"


DEFAULT_DATASET_MAPPING: Final = DatasetMapping()


def load_dataset_mapping(path: Path) -> DatasetMapping:
    """Read and check an HDF5 mapping file (the same YAML/JSON reading as a bag's)."""
    return parse_dataset_mapping(read_mapping_document(path), source=str(path))


def _names(value: Any, where: str) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) and 0 < len(v) <= 128 for v in value)
        or len(set(value)) != len(value)
    ):
        raise MappingError(f"{where} must be a list of distinct, non-empty names")
    return tuple(value)


def parse_dataset_mapping(document: Any, *, source: str = "mapping") -> DatasetMapping:
    """Check an HDF5 mapping document (already parsed from YAML/JSON)."""
    where = f"mapping file {source}"
    if not isinstance(document, dict):
        raise MappingError(
            f"{where}: the top level must be a mapping with 'version: 1' and 'datasets'"
        )
    unknown = set(document) - _HDF5_FILE_KEYS
    if unknown:
        hint = (
            " ('topics' is for ROS 2 bags; an HDF5 file maps 'datasets')"
            if ("topics" in unknown)
            else ""
        )
        raise MappingError(
            f"{where}: unknown key(s) {sorted(unknown)}; allowed for an HDF5 file: "
            f"{sorted(_HDF5_FILE_KEYS)}{hint}"
        )
    if document.get("version") != 1:
        raise MappingError(f"{where}: 'version' must be 1 (found {document.get('version')!r})")
    map_defaults = document.get("map_defaults", True)
    if not isinstance(map_defaults, bool):
        raise MappingError(f"{where}: 'map_defaults' must be true or false")
    rate = document.get("rate_hz")
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0
    ):
        raise MappingError(f"{where}: 'rate_hz' must be a positive number of frames per second")
    names = document.get("joint_names")
    joint_names = _names(names, f"{where}: 'joint_names'") if names is not None else None
    raw = document.get("datasets") or {}
    if not isinstance(raw, dict):
        raise MappingError(f"{where}: 'datasets' must map dataset paths to entries")
    datasets = {}
    for key, value in raw.items():
        path = str(key).strip("/")
        datasets[path] = _dataset_entry(value, f"{where}: dataset {key!r}")
    return DatasetMapping(
        map_defaults=map_defaults,
        rate_hz=float(rate) if rate is not None else None,
        joint_names=joint_names,
        datasets=datasets,
        source=source,
    )


def _dataset_entry(raw: Any, where: str) -> DatasetEntry:
    if raw == "ignore":
        return DatasetEntry(ignore=True)
    if raw is None:
        return DatasetEntry()
    if not isinstance(raw, dict):
        raise MappingError(f"{where}: an entry is 'ignore' or a mapping of {sorted(_DATASET_KEYS)}")
    unknown = set(raw) - _DATASET_KEYS
    if unknown:
        raise MappingError(
            f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_DATASET_KEYS)}"
        )
    stream = raw.get("stream")
    if stream is not None and not (isinstance(stream, str) and _STREAM_NAME.fullmatch(stream)):
        raise MappingError(
            f"{where}: stream {stream!r} is not a stream name ([a-z][a-z0-9_]*, at most 64)"
        )
    kind = raw.get("type")
    if kind is not None and kind not in DATASET_FIELDS:
        raise MappingError(
            f"{where}: type {kind!r} is not one an HDF5 dataset can become "
            f"({', '.join(DATASET_FIELDS)})"
        )
    column = raw.get("field")
    if column is not None:
        allowed = DATASET_FIELDS[kind] if kind else DATASET_FIELDS["joint_state"]
        if column not in allowed:
            raise MappingError(f"{where}: field {column!r} must be one of {', '.join(allowed)}")
    names = raw.get("joint_names")
    ignore = raw.get("ignore", False)
    if not isinstance(ignore, bool):
        raise MappingError(f"{where}: ignore must be true or false")
    return DatasetEntry(
        stream=stream,
        type=kind,
        field=column,
        joint_names=_names(names, f"{where}: joint_names") if names is not None else None,
        ignore=ignore,
    )
