"""HDF5 episodes (the ALOHA/ACT and robomimic layouts) read with h5py and turned into episodes.

Teleoperation rigs of the ACT family write one file per episode: ``/observations/qpos`` and
``/observations/qvel`` (T x N float), optionally ``/observations/effort``, one dataset per camera
under ``/observations/images/`` (T x H x W x 3 uint8, or with ACT's ``compress`` option one
zero-padded JPEG buffer per frame, T x L uint8, with ``/compress_len`` holding the real lengths),
``/action`` (T x N) and a root attribute ``sim``. robomimic files hold many demonstrations:
``data/demo_N/obs/<key>``, ``data/demo_N/actions``, ``rewards``, ``dones``, with the
environment in the ``data`` group's ``env_args`` attribute (JSON). Each ``demo_N`` is an episode.

Like a bag, a file is read twice, in slices of frames (never a whole image dataset):

1. :func:`scan` checks every mapped dataset (shape, dtype, one row per time step across the
   episode, every compressed frame's image header), reading all of their data once, so a damaged
   or truncated file fails before anything is registered or spooled. Errors name the dataset.
2. :meth:`Hdf5Recording.batches` reads again and yields Arrow batches per stream.

HDF5 files of these layouts carry no timestamps: row ``i`` is at ``t0 + i / rate_hz``. The rate
comes from ``--rate-hz``, the sidecar, the mapping file, robomimic's ``env_args`` control
frequency, else 50 Hz (ACT's control rate); ``t0`` from ``--started-at`` or the sidecar, else the
file's modification time is taken as the end of the episode. docs/recordings.md has the rules.
"""

from __future__ import annotations

import importlib
import json
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa

from robolake.episode.ids import parse_timestamp_ns
from robolake.recordings.errors import CorruptRecording, MappingError, RecordingError
from robolake.recordings.manifest import default_sidecar, load_sidecar, recording_manifest
from robolake.recordings.mapping import (
    DATASET_FIELDS,
    DEFAULT_DATASET_MAPPING,
    DatasetEntry,
    DatasetMapping,
    load_dataset_mapping,
    stream_name_for,
)
from robolake.recordings.messages import encoded_image, image_table, raw_rgb_row, stream_schema
from robolake.recordings.rosbag import content_digest

SUFFIXES: Final = (".hdf5", ".h5")
#: ACT records and replays at 50 Hz (its control period is 20 ms); the default frame rate.
DEFAULT_RATE_HZ: Final = 50.0
#: What a sidecar may give for an HDF5 file besides the manifest fields.
SIDECAR_EXTRA: Final = frozenset({"rate_hz", "started_at", "joint_names"})
#: Rows per slice of a vector dataset, and bytes per slice of an image dataset.
SLICE_ROWS: Final = 2048
SLICE_BYTES: Final = 4 * 1024 * 1024
#: The contract's image limits (schemas/stream_types/image.v1.json).
MAX_SIDE: Final = 4096
MAX_FRAME_BYTES: Final = 3 * 1024 * 1024
_DEMO = re.compile(r"demo_(\d+)")


def _h5py() -> Any:
    """h5py, imported when an HDF5 file is read (it ships no type information: used as Any)."""
    return importlib.import_module("h5py")


def is_hdf5(path: Path) -> bool:
    """Whether ``path`` is uploaded as an HDF5 episode file (by its suffix; the content is
    checked by :func:`scan`, so a mislabelled file gets an error, not the wrong reader)."""
    return path.is_file() and path.suffix.lower() in SUFFIXES


@dataclass(frozen=True)
class DatasetRule:
    """One dataset filling one field of one stream."""

    path: str  # relative to the episode's group
    stream: str
    stream_type: str
    field: str
    joint_names: tuple[str, ...] | None = None


@dataclass
class Hdf5Stream:
    """What the first pass learnt about one stream."""

    name: str
    stream_type: str
    datasets: dict[str, str]  # field -> absolute dataset path in the file
    rows: int
    elements: list[str] | None = None
    elements_from: str = ""
    image: str | None = None  # raw | padded | vlen
    largest_bytes: int = 0


@dataclass(frozen=True)
class UnmappedDataset:
    """A dataset that is not uploaded, and why; listed in the upload report."""

    dataset: str
    shape: tuple[int, ...]
    dtype: str
    reason: str


@dataclass
class Hdf5Scan:
    """The first pass over one episode of an HDF5 file."""

    path: Path
    layout: str  # act | robomimic | generic
    group: str  # "/" or "/data/demo_N"
    digest: str
    rate_hz: float
    rate_from: str
    t0: int
    time_from: str
    frames: int
    streams: dict[str, Hdf5Stream]
    unmapped: list[UnmappedDataset]
    missing: list[str]
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def content_id(self) -> str:
        """What the episode id is derived from: the file's hash, and the demo for a file that
        holds several (each demonstration is its own episode)."""
        return self.digest if self.group == "/" else f"{self.digest}{self.group}"

    def t_ns(self, start: int, stop: int) -> list[int]:
        period = 1e9 / self.rate_hz
        return [self.t0 + round(i * period) for i in range(start, stop)]

    @property
    def t_max(self) -> int:
        return self.t_ns(self.frames - 1, self.frames)[0]


def _open(path: Path) -> Any:
    h5py = _h5py()

    if not path.is_file():
        raise RecordingError(f"{path} does not exist")
    try:
        signed = h5py.is_hdf5(str(path))
    except OSError as exc:
        raise CorruptRecording(f"{path}: cannot read it ({exc})") from exc
    if not signed:
        raise CorruptRecording(
            f"{path}: not an HDF5 file (no HDF5 signature); robolake reads HDF5 episodes "
            "(.hdf5/.h5) in the ACT or robomimic layout"
        )
    try:
        return h5py.File(str(path), "r")
    except OSError as exc:
        raise CorruptRecording(
            f"cannot read the HDF5 file: {path}: {exc}; nothing was uploaded -- a file copied "
            "while the recorder was still writing is truncated: copy it again from the robot"
        ) from exc


def _datasets(group: Any) -> dict[str, Any]:
    """Every dataset under ``group``, by path relative to it."""
    h5py = _h5py()

    found: dict[str, Any] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            found[name] = obj

    try:
        group.visititems(visit)
    except (OSError, RuntimeError, KeyError) as exc:
        raise CorruptRecording(
            f"cannot read the HDF5 file's structure under {group.name}: {exc}"
        ) from exc
    return found


def _layout(h5: Any) -> tuple[str, list[str]]:
    """(layout, episode groups) of an open file."""
    h5py = _h5py()

    data = h5.get("data")
    if isinstance(data, h5py.Group):
        demos = [k for k in data if _DEMO.fullmatch(k) and isinstance(data[k], h5py.Group)]
        if demos:
            demos.sort(key=lambda k: int(k.split("_")[1]))
            return "robomimic", [f"/data/{k}" for k in demos]
    if isinstance(h5.get("observations"), h5py.Group):
        return "act", ["/"]
    return "generic", ["/"]


def _default_rule(layout: str, path: str) -> DatasetRule | None:
    """The built-in mapping of a dataset path (relative to the episode group)."""
    if layout == "act":
        joints = {
            "observations/qpos": "position",
            "observations/qvel": "velocity",
            "observations/effort": "effort",
        }
        if path in joints:
            return DatasetRule(path, "joints", "joint_state", joints[path])
        if path.startswith("observations/images/") and path.count("/") == 2:
            return DatasetRule(path, stream_name_for(path.rsplit("/", 1)[1]), "image", "data")
        if path == "action":
            return DatasetRule(path, "action", "action", "action")
    if layout == "robomimic":
        if path == "actions":
            return DatasetRule(path, "actions", "action", "action")
        if path.startswith("obs/") and path.count("/") == 1:
            key = path[4:]
            if key.endswith("_image"):
                return DatasetRule(path, stream_name_for(key), "image", "data")
            for suffix, column in (("joint_pos", "position"), ("joint_vel", "velocity")):
                if key.endswith(suffix):
                    name = stream_name_for(key[: -len(suffix)] + "joints")
                    return DatasetRule(path, name, "joint_state", column)
    return None


def _unmapped_reason(layout: str, path: str) -> str:
    if layout == "act" and path == "compress_len":
        return "the compressed frames' lengths (used to check the image datasets)"
    if path in ("rewards", "dones"):
        return "per-step rewards and dones have no stream type in the contract"
    return (
        f"no built-in stream for it; map it in a mapping file (types: {', '.join(DATASET_FIELDS)})"
    )


def _resolve(
    layout: str, group: str, datasets: Mapping[str, Any], mapping: DatasetMapping
) -> tuple[list[DatasetRule], list[UnmappedDataset], list[str]]:
    where = f"mapping ({mapping.source})"
    rules: list[DatasetRule] = []
    unmapped: list[UnmappedDataset] = []
    prefix = "" if group == "/" else group
    for path, ds in sorted(datasets.items()):
        full = f"{prefix}/{path}"

        def skip(reason: str, path: str = path, ds: Any = ds, full: str = full) -> None:
            unmapped.append(UnmappedDataset(full, tuple(ds.shape), str(ds.dtype), reason))

        entry = mapping.datasets.get(path)
        if entry is not None and entry.ignore:
            skip("ignored by the mapping file")
            continue
        default = _default_rule(layout, path)
        if entry is None:
            if default is None:
                skip(_unmapped_reason(layout, path))
            elif not mapping.map_defaults:
                skip("not in the mapping file (map_defaults: false)")
            else:
                rules.append(default)
            continue
        rules.append(_rule(path, full, entry, default, where))
    by_stream: dict[str, DatasetRule] = {}
    for rule in rules:
        first = by_stream.setdefault(f"{rule.stream}\0{rule.field}", rule)
        if first is not rule:
            raise MappingError(
                f"{where}: datasets {prefix}/{first.path} and {prefix}/{rule.path} both become "
                f"field {rule.field!r} of stream {rule.stream!r}; give one of them another "
                "'stream' in the mapping file"
            )
        other = next(r for r in rules if r.stream == rule.stream)
        if other.stream_type != rule.stream_type:
            raise MappingError(
                f"{where}: stream {rule.stream!r} would be both {other.stream_type} (from "
                f"{prefix}/{other.path}) and {rule.stream_type} (from {prefix}/{rule.path})"
            )
    missing = sorted(f"{prefix}/{p}" for p in mapping.datasets if p not in datasets)
    return rules, unmapped, missing


def _rule(
    path: str, full: str, entry: DatasetEntry, default: DatasetRule | None, where: str
) -> DatasetRule:
    kind = entry.type or (default.stream_type if default else None)
    if kind is None:
        raise MappingError(
            f"{where}: dataset {full} has no built-in stream type; give its 'type' "
            f"({', '.join(DATASET_FIELDS)})"
        )
    if entry.field is not None and entry.field not in DATASET_FIELDS[kind]:
        raise MappingError(
            f"{where}: dataset {full}: field {entry.field!r} is not a field of {kind} "
            f"({', '.join(DATASET_FIELDS[kind])})"
        )
    if entry.joint_names is not None and kind == "image":
        raise MappingError(f"{where}: dataset {full}: joint_names apply to joint and action data")
    same_kind = default is not None and default.stream_type == kind
    column = entry.field or (default.field if same_kind and default else DATASET_FIELDS[kind][0])
    stream = entry.stream or (default.stream if default else stream_name_for(path))
    return DatasetRule(path, stream, kind, column, entry.joint_names)


def _float_matrix(ds: Any, full: str) -> tuple[int, int]:
    if ds.ndim != 2 or ds.dtype.kind != "f":
        raise RecordingError(
            f"dataset {full}: shape {tuple(ds.shape)} {ds.dtype}, expected T x N floats "
            "(one row of N values per time step)"
        )
    return int(ds.shape[0]), int(ds.shape[1])


def _image_kind(ds: Any, full: str) -> str:
    h5py = _h5py()

    if ds.ndim == 4 and ds.dtype == np.uint8 and ds.shape[3] == 3:
        height, width = int(ds.shape[1]), int(ds.shape[2])
        if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
            raise RecordingError(
                f"dataset {full}: frames of {width}x{height} px, over the contract's "
                f"{MAX_SIDE} px per side"
            )
        if width * height * 3 > MAX_FRAME_BYTES:
            raise RecordingError(
                f"dataset {full}: a raw {width}x{height} frame is {width * height * 3} bytes, "
                f"over the contract's {MAX_FRAME_BYTES} per frame; store it compressed"
            )
        return "raw"
    if ds.ndim == 2 and ds.dtype == np.uint8:
        return "padded"
    if ds.ndim == 1 and (h5py.check_vlen_dtype(ds.dtype) is bytes or ds.dtype.kind in "OV"):
        return "vlen"
    raise RecordingError(
        f"dataset {full}: shape {tuple(ds.shape)} {ds.dtype} is not a camera: expected "
        "T x H x W x 3 uint8 (raw RGB), T x L uint8 (zero-padded JPEG/PNG buffers, ACT's "
        "compress option) or T variable-length JPEG/PNG byte strings"
    )


def _read(ds: Any, full: str, start: int, stop: int) -> Any:
    try:
        return ds[start:stop]
    except (OSError, RuntimeError, ValueError) as exc:
        raise CorruptRecording(
            f"cannot read dataset {full}, rows {start} to {stop}: {exc}; nothing was uploaded "
            "-- the file is damaged or truncated"
        ) from exc


def _frames(kind: str, block: Any) -> list[bytes]:
    """The encoded frames of a slice of a compressed camera dataset."""
    if kind == "padded":
        return [bytes(row).rstrip(b"\0") for row in block]  # JPEG/PNG end in non-zero bytes
    return [bytes(v.tobytes() if isinstance(v, np.void) else v) for v in block]


def _slice_rows(ds: Any) -> int:
    """Rows per read: bounded in bytes, so an image dataset is never read whole."""
    per_row = max(1, int(np.prod(ds.shape[1:], dtype=np.int64)) * int(ds.dtype.itemsize))
    return int(max(1, min(SLICE_ROWS, SLICE_BYTES // per_row)))


def _check_images(
    ds: Any, full: str, kind: str, compress_len: np.ndarray[Any, Any] | None
) -> tuple[int, list[int]]:
    """Every frame of a compressed camera readable as JPEG/PNG; (largest bytes, lengths)."""
    total = int(ds.shape[0])
    step = _slice_rows(ds) if kind != "vlen" else 64
    largest = 0
    lengths: list[int] = []
    for start in range(0, total, step):
        for i, data in enumerate(_frames(kind, _read(ds, full, start, start + step))):
            index = start + i
            try:
                encoding, width, height = encoded_image(data)
            except ValueError as exc:
                raise RecordingError(f"dataset {full}, frame {index}: {exc}") from exc
            if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
                raise RecordingError(
                    f"dataset {full}, frame {index}: a {width}x{height} {encoding}, over the "
                    f"contract's {MAX_SIDE} px per side"
                )
            if len(data) > MAX_FRAME_BYTES:
                raise RecordingError(
                    f"dataset {full}, frame {index}: {len(data)} bytes, over the contract's "
                    f"{MAX_FRAME_BYTES} per frame"
                )
            largest = max(largest, len(data))
            lengths.append(len(data))
    if kind == "padded" and compress_len is not None:  # noqa: SIM102 -- reads as the rule
        if not any(np.array_equal(row, lengths) for row in compress_len):
            raise RecordingError(
                f"dataset {full}: its frames' lengths without the zero padding match no row "
                "of /compress_len (one row of lengths per camera): the buffers are damaged"
            )
    return largest, lengths


def _compress_len(h5: Any, layout: str, frames: int) -> np.ndarray[Any, Any] | None:
    ds = h5.get("compress_len") if layout == "act" else None
    if ds is None:
        return None
    if ds.ndim != 2 or ds.shape[1] != frames:
        raise RecordingError(
            f"dataset /compress_len: shape {tuple(ds.shape)}, expected cameras x {frames} "
            "(the length of every compressed frame)"
        )
    values: np.ndarray[Any, Any] = np.asarray(_read(ds, "/compress_len", 0, frames)).astype(
        np.int64
    )
    return values


def _check_floats(ds: Any, full: str) -> None:
    """Read every row once: a damaged chunk fails here, and no NaN/inf reaches the table."""
    step = _slice_rows(ds)
    for start in range(0, int(ds.shape[0]), step):
        block = np.asarray(_read(ds, full, start, start + step))
        bad = ~np.isfinite(block)
        if bad.any():
            row = start + int(np.argwhere(bad)[0][0])
            raise RecordingError(f"dataset {full}, row {row}: a value that is NaN or infinite")


@dataclass(frozen=True)
class TimeBase:
    """Where the rows' times come from (see the module docstring)."""

    rate_hz: float | None = None
    started_ns: int | None = None
    joint_names: tuple[str, ...] | None = None


def _rate(h5: Any, layout: str, base: TimeBase, mapping: DatasetMapping) -> tuple[float, str]:
    if base.rate_hz is not None:
        return base.rate_hz, "--rate-hz or the sidecar"
    if mapping.rate_hz is not None:
        return mapping.rate_hz, f"the mapping file ({mapping.source})"
    if layout == "robomimic":
        text = h5["data"].attrs.get("env_args")
        try:
            args = json.loads(text.decode() if isinstance(text, bytes) else str(text))
            freq = float(args["env_kwargs"]["control_freq"])
            if freq > 0:
                return freq, "env_args control_freq"
        except (TypeError, ValueError, KeyError, AttributeError):
            pass
    return DEFAULT_RATE_HZ, "the default (ACT's 50 Hz)"


def _attrs(h5: Any, layout: str) -> dict[str, str]:
    metadata = {"hdf5_layout": layout}
    if "sim" in h5.attrs:
        metadata["hdf5_sim"] = str(bool(h5.attrs["sim"])).lower()
    if layout == "robomimic":
        text = h5["data"].attrs.get("env_args")
        try:
            args = json.loads(text.decode() if isinstance(text, bytes) else str(text))
            metadata["env_name"] = str(args["env_name"])[:1024]
        except (TypeError, ValueError, KeyError, AttributeError):
            pass
    return metadata


def scan(
    path: Path,
    mapping: DatasetMapping = DEFAULT_DATASET_MAPPING,
    *,
    demo: int | None = None,
    base: TimeBase | None = None,
) -> list[Hdf5Scan]:
    """The first pass over every episode of the file (or demo ``demo``), before any upload."""
    base = base or TimeBase()
    with _open(path) as h5:
        layout, groups = _layout(h5)
        if demo is not None:
            if layout != "robomimic":
                raise RecordingError(f"{path}: --demo applies to robomimic files (data/demo_N)")
            wanted = f"/data/demo_{demo}"
            if wanted not in groups:
                have = ", ".join(g.rsplit("/", 1)[1] for g in groups)
                raise RecordingError(f"{path}: there is no {wanted} (the file has {have})")
            groups = [wanted]
        rate, rate_from = _rate(h5, layout, base, mapping)
        metadata = _attrs(h5, layout)
        scans = [_scan_group(h5, path, layout, g, mapping, base, rate, rate_from) for g in groups]
    digest = content_digest([path])
    for found in scans:
        found.digest = digest
        found.metadata.update(metadata)
    return scans


def _scan_group(
    h5: Any,
    path: Path,
    layout: str,
    group: str,
    mapping: DatasetMapping,
    base: TimeBase,
    rate: float,
    rate_from: str,
) -> Hdf5Scan:
    prefix = "" if group == "/" else group
    datasets = _datasets(h5[group])
    rules, unmapped, missing = _resolve(layout, group, datasets, mapping)
    if not rules:
        listed = ", ".join(f"{u.dataset} {list(u.shape)} {u.dtype}" for u in unmapped) or "none"
        raise RecordingError(
            f"{path}{'' if group == '/' else ' ' + group}: no dataset maps to a stream, so there "
            f"is nothing to upload (datasets: {listed}); it is neither the ACT layout "
            "(/observations/qpos, /observations/images/<cam>, /action) nor robomimic's "
            "(data/demo_N/obs, actions) -- map its datasets in a mapping file (--mapping)"
        )
    # One row per time step: every mapped dataset of an episode has the same first dimension.
    lengths = {f"{prefix}/{r.path}": int(datasets[r.path].shape[0]) for r in rules}
    if any(datasets[r.path].ndim == 0 for r in rules):
        scalar = next(f"{prefix}/{r.path}" for r in rules if datasets[r.path].ndim == 0)
        raise RecordingError(f"dataset {scalar}: a scalar, expected one row per time step")
    # The reference is the joint positions when there are any (what every row is aligned to).
    order = sorted(rules, key=lambda r: (r.stream_type != "joint_state", r.field != "position"))
    first = f"{prefix}/{order[0].path}"
    frames = lengths[first]
    for name, count in sorted(lengths.items()):
        if count != frames:
            raise RecordingError(
                f"dataset {name} has {count} rows but {first} has {frames}: every mapped "
                "dataset of an episode holds one row per time step (a camera that dropped "
                "frames, or a recording cut short?)"
            )
    if frames == 0:
        raise RecordingError(f"dataset {first}: no rows, so there is nothing to upload")
    streams: dict[str, Hdf5Stream] = {}
    compress_len = _compress_len(h5, layout, frames)
    # Position first, so the joint count (and a message about it) comes from qpos.
    for rule in sorted(rules, key=lambda r: DATASET_FIELDS[r.stream_type].index(r.field)):
        full = f"{prefix}/{rule.path}"
        ds = datasets[rule.path]
        stream = streams.setdefault(
            rule.stream, Hdf5Stream(rule.stream, rule.stream_type, {}, frames)
        )
        stream.datasets[rule.field] = full
        if rule.stream_type == "image":
            stream.image = _image_kind(ds, full)
            if stream.image == "raw":
                stream.largest_bytes = int(np.prod(ds.shape[1:]))
                _read(ds, full, frames - 1, frames)  # the last frame is there (truncation)
                for start in range(0, frames, _slice_rows(ds)):
                    _read(ds, full, start, start + _slice_rows(ds))
            else:
                stream.largest_bytes, _ = _check_images(ds, full, stream.image, compress_len)
        else:
            _, width = _float_matrix(ds, full)
            _check_floats(ds, full)
            stream.largest_bytes = max(stream.largest_bytes, width * 4 * 3 + 8)
            _elements(stream, rule, width, base, mapping, full)
    for stream in streams.values():
        if stream.stream_type == "joint_state" and "position" not in stream.datasets:
            raise MappingError(
                f"mapping ({mapping.source}): joint stream {stream.name!r} has "
                f"{', '.join(stream.datasets)} but no position dataset (field: position)"
            )
    if layout == "act":
        _action_names(streams)
    if base.started_ns is not None:
        t0, time_from = base.started_ns, "--started-at or the sidecar"
    else:
        end_ns = (path.stat().st_mtime_ns // 1_000_000) * 1_000_000
        t0 = end_ns - round((frames - 1) * 1e9 / rate)
        time_from = "the file's modification time (the end of the episode)"
    return Hdf5Scan(
        path=path,
        layout=layout,
        group=group,
        digest="",
        rate_hz=rate,
        rate_from=rate_from,
        t0=t0,
        time_from=time_from,
        frames=frames,
        streams=streams,
        unmapped=unmapped,
        missing=missing,
    )


def _elements(
    stream: Hdf5Stream,
    rule: DatasetRule,
    width: int,
    base: TimeBase,
    mapping: DatasetMapping,
    full: str,
) -> None:
    """The stream's element names: the entry's, else the file-wide ones (flag, sidecar, mapping
    file) for joints, else generated (``joint_0``...; actions: resolved later)."""
    chosen: tuple[tuple[str, ...], str] | None = None
    if rule.joint_names is not None:
        chosen = rule.joint_names, "the mapping file's entry"
    elif rule.stream_type == "joint_state" and base.joint_names is not None:
        chosen = base.joint_names, "--joint-names or the sidecar"
    elif rule.stream_type == "joint_state" and mapping.joint_names is not None:
        chosen = mapping.joint_names, "the mapping file"
    if chosen is not None and len(chosen[0]) != width:
        raise RecordingError(
            f"dataset {full} has {width} values per row but {len(chosen[0])} joint names came "
            f"from {chosen[1]}"
        )
    if stream.elements is not None:
        if len(stream.elements) != width:
            raise RecordingError(
                f"dataset {full} has {width} values per row, but the stream {stream.name!r} "
                f"has {len(stream.elements)} elements ({', '.join(stream.datasets.values())})"
            )
        if chosen is not None and chosen[1] == "the mapping file's entry":
            stream.elements, stream.elements_from = list(chosen[0]), chosen[1]
        return
    if chosen is not None:
        stream.elements, stream.elements_from = list(chosen[0]), chosen[1]
    elif rule.stream_type == "joint_state":
        stream.elements, stream.elements_from = [f"joint_{i}" for i in range(width)], "generated"
    else:
        stream.elements, stream.elements_from = [f"action_{i}" for i in range(width)], "generated"


def _action_names(streams: Mapping[str, Hdf5Stream]) -> None:
    """ACT's actions are target joint positions (as wide as qpos), so they take the joint
    names; robomimic's are controller commands (end-effector deltas), so theirs stay generated."""
    joints = [s for s in streams.values() if s.stream_type == "joint_state"]
    if len(joints) != 1 or joints[0].elements is None:
        return
    for stream in streams.values():
        if (
            stream.stream_type == "action"
            and stream.elements_from == "generated"
            and stream.elements is not None
            and len(stream.elements) == len(joints[0].elements)
        ):
            stream.elements = list(joints[0].elements)
            stream.elements_from = f"the joint stream {joints[0].name}"


def _float_lists(block: np.ndarray[Any, Any]) -> pa.ListArray:
    rows, width = block.shape
    values = pa.array(np.ascontiguousarray(block, dtype=np.float32).reshape(-1))
    offsets = pa.array(np.arange(0, (rows + 1) * width, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, values)


def stream_batches(
    found: Hdf5Scan, skip: Mapping[str, int] | None = None
) -> Iterator[tuple[str, pa.Table]]:
    """The second pass: ``(stream, rows)`` per stream in slices, skipping spooled rows."""
    skip = dict(skip or {})
    with _open(found.path) as h5:
        for name, stream in sorted(found.streams.items()):
            datasets = {col: h5[path] for col, path in stream.datasets.items()}
            step = min(_slice_rows(ds) for ds in datasets.values())
            for start in range(min(skip.get(name, 0), found.frames), found.frames, step):
                stop = min(start + step, found.frames)
                t_ns = found.t_ns(start, stop)
                block = {
                    col: _read(ds, stream.datasets[col], start, stop)
                    for col, ds in datasets.items()
                }
                yield name, _table(stream, t_ns, block)


def _table(stream: Hdf5Stream, t_ns: list[int], block: Mapping[str, Any]) -> pa.Table:
    times = pa.array(t_ns, pa.int64())
    if stream.stream_type == "joint_state":
        n = len(t_ns)
        columns = [times] + [
            _float_lists(np.asarray(block[c]))
            if c in block
            else pa.nulls(n, pa.list_(pa.float32()))
            for c in ("position", "velocity", "effort")
        ]
        return pa.Table.from_arrays(columns, schema=stream_schema("joint_state"))
    if stream.stream_type == "action":
        columns = [times, _float_lists(np.asarray(block["action"]))]
        return pa.Table.from_arrays(columns, schema=stream_schema("action"))
    data = block["data"]
    rows: list[tuple[Any, ...]] = []
    if stream.image == "raw":
        rows = [raw_rgb_row(frame) for frame in data]
    else:
        for frame in _frames(stream.image or "vlen", data):
            encoding, width, height = encoded_image(frame)
            rows.append((encoding, width, height, frame))
    return image_table("image", t_ns, rows)


@dataclass
class Hdf5Recording:
    """One checked episode of an HDF5 file: its manifest; :meth:`batches` streams its rows."""

    scan: Hdf5Scan
    manifest: str
    scan_seconds: float

    @property
    def episode_id(self) -> str:
        value: str = json.loads(self.manifest)["episode_id"]
        return value

    def batches(self, skip: Mapping[str, int] | None = None) -> Iterator[tuple[str, pa.Table]]:
        return stream_batches(self.scan, skip)

    def check_chunk_limit(self, max_chunk_bytes: int) -> None:
        """Refuse, before anything is registered, a frame bigger than a chunk (a row is never
        split, so the upload would fail halfway)."""
        for name, stream in sorted(self.scan.streams.items()):
            if stream.largest_bytes > max_chunk_bytes:
                raise RecordingError(
                    f"stream {name} ({', '.join(stream.datasets.values())}) has a row of "
                    f"{stream.largest_bytes} bytes, over the {max_chunk_bytes}-byte chunk limit: "
                    "a row must fit one chunk; raise --max-chunk-bytes or ignore the dataset in "
                    "the mapping file"
                )

    def report(self) -> dict[str, Any]:
        found = self.scan
        return {
            "source": str(found.path),
            "format": "hdf5",
            "layout": found.layout,
            "group": found.group,
            "content_sha256": found.digest,
            "bytes": found.path.stat().st_size,
            "scan_seconds": round(self.scan_seconds, 3),
            "rate_hz": found.rate_hz,
            "rate_from": found.rate_from,
            "time_from": found.time_from,
            "streams": {
                name: {
                    "datasets": dict(sorted(s.datasets.items())),
                    "type": s.stream_type,
                    "rows": s.rows,
                    "elements_from": s.elements_from or None,
                    "image": s.image,
                }
                for name, s in sorted(found.streams.items())
            },
            "unmapped_datasets": [
                {"dataset": u.dataset, "shape": list(u.shape), "dtype": u.dtype, "reason": u.reason}
                for u in found.unmapped
            ],
            "mapped_datasets_not_in_file": found.missing,
        }


def _manifest(found: Hdf5Scan, fields: Mapping[str, Any], source: str) -> str:
    streams = []
    for name, stream in sorted(found.streams.items()):
        decl: dict[str, Any] = {
            "name": name,
            "type": stream.stream_type,
            "type_version": 1,
            "rate_hz": found.rate_hz,
        }
        if stream.elements:
            decl["elements"] = stream.elements
        metadata = {f"hdf5_{col}": path[:1024] for col, path in sorted(stream.datasets.items())}
        metadata.update(found.metadata)
        decl["metadata"] = metadata
        streams.append(decl)
    return recording_manifest(
        streams,
        fields,
        content_sha256=found.content_id,
        t_min=found.t0,
        t_max=found.t_max,
        source=source,
        what="an HDF5 file",
    )


def prepare_hdf5(
    path: Path,
    *,
    fields: Mapping[str, Any],
    mapping: Path | None = None,
    sidecar: Path | None = None,
    demo: int | None = None,
    rate_hz: float | None = None,
    started_at: str | None = None,
    joint_names: Sequence[str] | None = None,
) -> list[Hdf5Recording]:
    """Check every episode of the HDF5 file at ``path`` and build their manifests (one per
    robomimic demo, or only ``demo``). Flags (``fields`` and the keywords) win over the sidecar."""
    dataset_mapping = load_dataset_mapping(mapping) if mapping is not None else None
    side = sidecar or default_sidecar(path)
    merged: dict[str, Any] = {}
    if sidecar is not None or side.is_file():
        merged.update(load_sidecar(side, SIDECAR_EXTRA))
    merged.update({k: v for k, v in fields.items() if v not in (None, [], "")})
    rate = rate_hz if rate_hz is not None else merged.pop("rate_hz", None)
    merged.pop("rate_hz", None)
    start = started_at if started_at is not None else merged.pop("started_at", None)
    merged.pop("started_at", None)
    names = joint_names if joint_names is not None else merged.pop("joint_names", None)
    merged.pop("joint_names", None)
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0
    ):
        raise RecordingError(f"the frame rate must be a positive number of Hz (found {rate!r})")
    started_ns = None
    if start is not None:
        try:
            started_ns = parse_timestamp_ns(str(start))
        except (ValueError, TypeError) as exc:
            raise RecordingError(
                f"started_at {start!r} is not an RFC 3339 UTC time such as "
                f"2026-03-01T09:30:00Z ({exc})"
            ) from exc
    if names is not None and (
        isinstance(names, str)
        or not all(isinstance(n, str) and n for n in names)
        or len(set(names)) != len(names)
    ):
        raise RecordingError(f"joint names must be distinct, non-empty names (found {names!r})")
    base = TimeBase(
        rate_hz=float(rate) if rate is not None else None,
        started_ns=started_ns,
        joint_names=tuple(names) if names is not None else None,
    )
    began = time.perf_counter()
    scans = scan(path, dataset_mapping or DEFAULT_DATASET_MAPPING, demo=demo, base=base)
    seconds = (time.perf_counter() - began) / len(scans)
    return [Hdf5Recording(s, _manifest(s, merged, str(side)), seconds) for s in scans]
