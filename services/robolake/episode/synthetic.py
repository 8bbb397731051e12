"""Synthetic episodes of a humanoid-like robot, for tests, the simulator and benchmarks.

Deterministic from a seed: the same spec gives the same manifest, rows and chunk bytes. Camera
frames are real 640x480 JPEGs that never repeat within an episode: each frame is the camera's
scene, shifted, with a moving disc and its own sensor noise, so compression finds no repeats a
real camera would not give (a pool of 8 cycling frames once let zstd store 337 MB of JPEG as
64 MB). Generating data must never be what a benchmark measures, so encoding is cheap (the scene
is computed once per camera, the noise is a slice of a per-camera bank: about 2.5 ms per frame,
against 46 ms before) and each camera's frames are kept per process (:class:`_FrameSequence`):
episodes sharing a ``frame_seed`` share the encoding work, each starting at its own frame. All
rows are built with numpy and pyarrow constructors over whole arrays, no per-row Python.
"""

from __future__ import annotations

import functools
import io
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pyarrow as pa
from PIL import Image

from robolake.episode.chunks import split_into_chunks
from robolake.episode.ids import NS_PER_S, format_timestamp_ns, new_episode_id
from robolake.episode.manifest import EpisodeManifest, Scene, parse_manifest
from robolake.episode.stream_types import StreamTypeRegistry, default_registry
from robolake.episode.topics import DEFAULT_MAX_CHUNK_BYTES

#: Joint names of a 29-DoF humanoid: 2 x 6 leg, 3 waist, 2 x 7 arm joints.
HUMANOID_JOINTS: Final = tuple(
    [
        f"{side}_{joint}"
        for side in ("left", "right")
        for joint in ("hip_pitch", "hip_roll", "hip_yaw", "knee", "ankle_pitch", "ankle_roll")
    ]
    + ["waist_yaw", "waist_roll", "waist_pitch"]
    + [
        f"{side}_{joint}"
        for side in ("left", "right")
        for joint in (
            "shoulder_pitch",
            "shoulder_roll",
            "shoulder_yaw",
            "elbow",
            "wrist_roll",
            "wrist_pitch",
            "wrist_yaw",
        )
    ]
)
_F64 = np.ndarray[Any, np.dtype[np.float64]]
#: 2026-01-05T08:00:00Z: the default start of synthetic episodes, shifted by the seed.
_BASE_START_NS: Final = 1_767_600_000 * NS_PER_S


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate. The defaults are the issue's humanoid: 29 joints at 100 Hz, IMU at
    200 Hz, actions at 100 Hz, three 640x480 JPEG cameras at 30 Hz, a base pose, events."""

    seed: int = 0
    duration_s: float = 10.0
    joints: int = len(HUMANOID_JOINTS)
    joint_rate_hz: float = 100.0
    action_rate_hz: float = 100.0
    imu_rate_hz: float = 200.0
    pose_rate_hz: float | None = 100.0
    cameras: tuple[str, ...] = ("head", "wrist_left", "wrist_right")
    camera_rate_hz: float = 30.0
    width: int = 640
    height: int = 480
    #: None (the default): every frame of an episode is distinct. A number N cycles the first N
    #: frames instead -- cheaper, for tests of logic that never looks at the bytes; never use it
    #: for benchmarks or the demo, whose compression ratios it would inflate.
    frame_pool: int | None = None
    jpeg_quality: int = 85
    #: Seed of the cameras' frame sequences; None = ``seed``. Sharing it across episodes (the
    #: simulator and the benches do) encodes each frame once per process instead of once per
    #: episode; each episode still starts at its own frame (``seed`` modulo its frame count),
    #: and within an episode no frame repeats.
    frame_seed: int | None = None
    started_at_ns: int | None = None
    capture_point_id: str = "cp-0001"
    device_id: str = "dev-0001"
    robot_type: str = "humanoid_29dof"
    scene: Scene = "warehouse"
    task: str = "pick up the red box and put it on the second shelf"
    operator: str = "op-7f3a"


@dataclass(frozen=True)
class SyntheticEpisode:
    """A generated episode: its manifest and each stream's rows in time order."""

    spec: SyntheticSpec
    manifest_document: Mapping[str, Any]
    manifest: EpisodeManifest
    streams: Mapping[str, pa.Table] = field(repr=False)

    def manifest_bytes(self) -> bytes:
        """The manifest as a device would send it."""
        return json.dumps(self.manifest_document, separators=(",", ":")).encode()

    def chunks(self, max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES) -> dict[str, list[bytes]]:
        """Each stream's chunks in seq order (seq = position in the list)."""
        return {
            decl.name: list(
                split_into_chunks(self.streams[decl.name], decl.stream_type, max_chunk_bytes)
            )
            for decl in self.manifest.streams
        }

    def iter_chunks(
        self, max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES
    ) -> Iterator[tuple[str, int, bytes]]:
        """``(stream, seq, bytes)`` of every chunk, stream after stream."""
        for stream, encoded in self.chunks(max_chunk_bytes).items():
            for seq, data in enumerate(encoded):
                yield stream, seq, data

    def completion_document(self, chunks: Mapping[str, list[bytes]]) -> dict[str, Any]:
        """The completion a device sends after uploading ``chunks``."""
        return {
            "streams": {
                name: {"chunks": len(encoded), "rows": self.streams[name].num_rows}
                for name, encoded in chunks.items()
            }
        }


def generate_episode(
    spec: SyntheticSpec | None = None, registry: StreamTypeRegistry | None = None
) -> SyntheticEpisode:
    """Generate one episode from ``spec`` (default: the humanoid with seed 0)."""
    spec = spec if spec is not None else SyntheticSpec()
    registry = registry if registry is not None else default_registry()
    rng = np.random.default_rng(spec.seed)
    start = (
        spec.started_at_ns
        if spec.started_at_ns is not None
        else _BASE_START_NS + (spec.seed % 100_000) * 600 * NS_PER_S
    )
    end = start + round(spec.duration_s * NS_PER_S)
    joints = _joint_names(spec.joints)
    motion = _JointMotion.sample(rng, spec.joints)

    streams: dict[str, pa.Table] = {}
    declared: list[dict[str, Any]] = []

    def declare(name: str, type_name: str, rate: float, **extra: Any) -> None:
        declared.append(
            {"name": name, "type": type_name, "type_version": 1, "rate_hz": rate, **extra}
        )

    t = sample_times(rng, start, spec.duration_s, spec.joint_rate_hz)
    streams["joint_state"] = joint_state_table(t, motion, rng)
    declare("joint_state", "joint_state", spec.joint_rate_hz, elements=list(joints))

    t = sample_times(rng, start, spec.duration_s, spec.action_rate_hz)
    streams["action"] = action_table(t, motion, rng)
    declare("action", "action", spec.action_rate_hz, elements=list(joints))

    t = sample_times(rng, start, spec.duration_s, spec.imu_rate_hz)
    streams["imu"] = imu_table(t, rng)
    declare("imu", "imu", spec.imu_rate_hz, metadata={"frame_id": "pelvis_imu"})

    if spec.pose_rate_hz is not None:
        t = sample_times(rng, start, spec.duration_s, spec.pose_rate_hz)
        streams["base_pose"] = pose_table(t)
        declare(
            "base_pose",
            "pose",
            spec.pose_rate_hz,
            metadata={"frame_id": "pelvis", "parent_frame_id": "odom"},
        )

    for index, camera in enumerate(spec.cameras):
        name = f"cam_{camera}"
        t = sample_times(rng, start, spec.duration_s, spec.camera_rate_hz)
        frames = camera_frames(
            spec.seed if spec.frame_seed is None else spec.frame_seed,
            index,
            spec.width,
            spec.height,
            spec.jpeg_quality,
            count=len(t),
            first=spec.seed,
            cycle=spec.frame_pool,
        )
        streams[name] = image_table(t, frames, spec.width, spec.height)
        focal = spec.width / (2 * math.tan(math.radians(45)))  # 90 degree horizontal FOV
        camera_info = {
            "width": spec.width,
            "height": spec.height,
            "fx": focal,
            "fy": focal,
            "cx": spec.width / 2,
            "cy": spec.height / 2,
            "distortion_model": "none",
            "frame_id": f"{camera}_camera",
        }
        declare(name, "image", spec.camera_rate_hz, camera=camera_info)

    success = bool(rng.random() < 0.8)
    streams["events"] = event_table(start, end, spec.task, success)
    declare("events", "event", 1.0)

    document: dict[str, Any] = {
        "manifest_version": 1,
        "episode_id": new_episode_id(spec.device_id, start // 1_000_000, rng.bytes(10)),
        "capture_point_id": spec.capture_point_id,
        "device_id": spec.device_id,
        "robot_type": spec.robot_type,
        "scene": spec.scene,
        "task": spec.task,
        "operator": spec.operator,
        "started_at": format_timestamp_ns(start),
        "ended_at": format_timestamp_ns(end),
        "streams": declared,
        "tags": ["synthetic", f"seed-{spec.seed}"],
        "software": {"robolake.synthetic": "1"},
        "rights": {"license": "CC-BY-4.0", "consent": "not_required"},
    }
    return SyntheticEpisode(
        spec=spec,
        manifest_document=document,
        manifest=parse_manifest(document, registry),
        streams=streams,
    )


def _joint_names(count: int) -> tuple[str, ...]:
    if count == len(HUMANOID_JOINTS):
        return HUMANOID_JOINTS
    return tuple(f"joint_{i:02d}" for i in range(count))


def sample_times(
    rng: np.random.Generator, start_ns: int, duration_s: float, rate_hz: float
) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Sample times at ``rate_hz`` with up to 5% of a period of jitter, strictly inside the
    episode and increasing."""
    count = max(1, int(duration_s * rate_hz))
    period = NS_PER_S / rate_hz
    jitter = rng.integers(0, max(1, int(period * 0.05)), size=count)
    base = (np.arange(count, dtype=np.float64) * period).astype(np.int64)
    result: np.ndarray[Any, np.dtype[np.int64]] = start_ns + base + jitter
    return result


@dataclass(frozen=True)
class _JointMotion:
    """Per-joint sinusoid: position = offset + amplitude * sin(2 pi f t + phase)."""

    offset: np.ndarray[Any, np.dtype[np.float64]]
    amplitude: np.ndarray[Any, np.dtype[np.float64]]
    frequency: np.ndarray[Any, np.dtype[np.float64]]
    phase: np.ndarray[Any, np.dtype[np.float64]]

    @classmethod
    def sample(cls, rng: np.random.Generator, joints: int) -> _JointMotion:
        return cls(
            offset=rng.uniform(-0.5, 0.5, joints),
            amplitude=rng.uniform(0.05, 0.6, joints),
            frequency=rng.uniform(0.1, 1.0, joints),
            phase=rng.uniform(0, 2 * math.pi, joints),
        )

    def position(self, t_s: _F64) -> _F64:
        angle = 2 * math.pi * self.frequency[None, :] * t_s[:, None] + self.phase[None, :]
        result: _F64 = self.offset[None, :] + self.amplitude[None, :] * np.sin(angle)
        return result

    def velocity(self, t_s: _F64) -> _F64:
        omega = 2 * math.pi * self.frequency[None, :]
        angle = omega * t_s[:, None] + self.phase[None, :]
        result: _F64 = self.amplitude[None, :] * omega * np.cos(angle)
        return result


def _seconds(t_ns: np.ndarray[Any, Any]) -> _F64:
    result: _F64 = (t_ns - t_ns[0]).astype(np.float64) / NS_PER_S
    return result


def _list_array(matrix: np.ndarray[Any, Any]) -> pa.ListArray:
    rows, width = matrix.shape
    offsets = pa.array(np.arange(0, rows * width + 1, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(matrix.astype(np.float32).ravel()))


def _fixed_list_array(matrix: np.ndarray[Any, Any]) -> pa.FixedSizeListArray:
    width = matrix.shape[1]
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.astype(np.float32).ravel()), width)


def _table(stream_type: str, columns: list[pa.Array]) -> pa.Table:
    schema = default_registry().get(stream_type, 1).wire_schema
    return pa.Table.from_arrays(columns, schema=schema)


def joint_state_table(
    t_ns: np.ndarray[Any, Any], motion: _JointMotion, rng: np.random.Generator
) -> pa.Table:
    """joint_state rows: sinusoidal positions with sensor noise, their velocities, efforts."""
    t_s = _seconds(t_ns)
    position = motion.position(t_s) + rng.normal(0, 1e-3, (len(t_s), len(motion.offset)))
    velocity = motion.velocity(t_s)
    effort = 8.0 * (motion.offset[None, :] - position) + rng.normal(0, 0.05, position.shape)
    return _table(
        "joint_state",
        [pa.array(t_ns), _list_array(position), _list_array(velocity), _list_array(effort)],
    )


def action_table(
    t_ns: np.ndarray[Any, Any], motion: _JointMotion, rng: np.random.Generator
) -> pa.Table:
    """action rows: target positions 50 ms ahead of the state, as a tracking policy would send."""
    target = motion.position(_seconds(t_ns) + 0.05)
    target += rng.normal(0, 5e-3, target.shape)
    return _table("action", [pa.array(t_ns), _list_array(target)])


def imu_table(t_ns: np.ndarray[Any, Any], rng: np.random.Generator) -> pa.Table:
    """imu rows: gentle sway, gravity plus noise, a slowly turning yaw quaternion."""
    t_s = _seconds(t_ns)
    n = len(t_s)
    gyro = np.stack(
        [0.05 * np.sin(2.1 * t_s), 0.04 * np.sin(1.3 * t_s), 0.1 * np.cos(0.4 * t_s)], axis=1
    )
    gyro += rng.normal(0, 0.01, (n, 3))
    accel = np.tile([0.0, 0.0, 9.81], (n, 1)) + rng.normal(0, 0.05, (n, 3))
    yaw = 0.25 * np.sin(0.4 * t_s)
    zeros = np.zeros(n)
    quaternion = np.stack([zeros, zeros, np.sin(yaw / 2), np.cos(yaw / 2)], axis=1)
    return _table(
        "imu",
        [
            pa.array(t_ns),
            _fixed_list_array(gyro),
            _fixed_list_array(accel),
            _fixed_list_array(quaternion),
        ],
    )


def pose_table(t_ns: np.ndarray[Any, Any]) -> pa.Table:
    """pose rows: the base walking a slow arc."""
    t_s = _seconds(t_ns)
    yaw = 0.05 * t_s
    zeros = np.zeros(len(t_s))
    position = np.stack([0.3 * t_s * np.cos(yaw), 0.3 * t_s * np.sin(yaw), zeros + 0.78], axis=1)
    quaternion = np.stack([zeros, zeros, np.sin(yaw / 2), np.cos(yaw / 2)], axis=1)
    return _table(
        "pose", [pa.array(t_ns), _fixed_list_array(position), _fixed_list_array(quaternion)]
    )


def image_table(
    t_ns: np.ndarray[Any, Any], frames: pa.Array, width: int, height: int, *, offset: int = 0
) -> pa.Table:
    """image rows of JPEG ``frames`` (a binary array), cycling through them from ``offset`` when
    there are fewer frames than times (a test's small pool)."""
    n = len(t_ns)
    data = (
        frames
        if offset == 0 and len(frames) == n
        else frames.take((np.arange(n) + offset) % len(frames))
    )
    return _table(
        "image",
        [
            pa.array(t_ns),
            pa.repeat(pa.scalar("jpeg", pa.string()), n),
            pa.repeat(pa.scalar(width, pa.int32()), n),
            pa.repeat(pa.scalar(height, pa.int32()), n),
            data,
        ],
    )


def event_table(start_ns: int, end_ns: int, task: str, success: bool) -> pa.Table:
    """event rows: the instruction at the start, a phase marker midway, the success label."""
    t = [start_ns, (start_ns + end_ns) // 2, end_ns]
    return _table(
        "event",
        [
            pa.array(t, pa.int64()),
            pa.array(["instruction", "marker", "success_label"]),
            pa.array([task, "grasp", "success" if success else "failure"]),
            pa.array([None, None, 1.0 if success else 0.0], pa.float32()),
        ],
    )


#: The sensor noise: uniform in [0, NOISE_LEVELS), a standard deviation of about 6 grey levels.
NOISE_LEVELS: Final = 21
#: Cameras' frame sequences kept per process; the least recently used beyond it are dropped (a
#: test making episodes of many seeds would otherwise keep every frame of each).
SEQUENCES_KEPT: Final = 24


class _FrameSequence:
    """The JPEG frames of one camera (``seed``, ``camera``, size, quality), encoded on demand and
    kept: frame ``i`` is always the same bytes, whatever order frames are asked for in.

    A frame is the camera's scene (smooth gradients, computed once) shifted by a few pixels per
    frame, a red disc moving on a circle, plus noise: a slice of the camera's noise bank at a
    random offset (per frame), so no two frames share their pixels and their JPEG bytes are
    unrelated. Cost: about 2.5 ms per 640x480 frame (JPEG encoding is 1.8 ms of it).
    """

    def __init__(self, seed: int, camera: int, width: int, height: int, quality: int) -> None:
        self.key = (seed, camera)
        self.width, self.height, self.quality = width, height, quality
        rng = np.random.default_rng([seed, camera])
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        colour = rng.uniform(40, 200, 3).astype(np.float32)
        scene = np.empty((height, width, 3), dtype=np.float32)
        for channel in range(3):
            scene[..., channel] = (
                colour[channel]
                + 40 * np.sin(xs / (37 + 11 * channel))
                + 30 * np.cos(ys / (23 + 7 * channel))
            )
        # Room for the noise on top: scene + noise stays within 0..255 without clipping.
        self.scene = np.clip(scene, 0, 255 - (NOISE_LEVELS - 1)).astype(np.uint8)
        self.pixels = height * width * 3
        self.noise = rng.integers(0, NOISE_LEVELS, size=2 * self.pixels, dtype=np.uint8)
        self.radius = max(1, int(0.12 * height))
        side = np.arange(-self.radius, self.radius + 1)
        self.disc = side[:, None] ** 2 + side[None, :] ** 2 < self.radius**2
        self.frames: list[bytes] = []
        self.lock = threading.Lock()

    def _encode(self, index: int) -> bytes:
        rng = np.random.default_rng([*self.key, index])
        image = np.roll(self.scene, (3 * index) % self.width, axis=1)
        phase = 2 * math.pi * index / 90  # a lap every 3 s at 30 Hz
        r = self.radius
        cx = int(self.width * (0.5 + 0.3 * math.cos(phase)))
        cy = int(self.height * (0.5 + 0.3 * math.sin(phase)))
        y0, x0 = max(0, cy - r), max(0, cx - r)
        box = image[y0 : cy + r + 1, x0 : cx + r + 1]
        mask = self.disc[y0 - (cy - r) :, x0 - (cx - r) :][: box.shape[0], : box.shape[1]]
        box[mask] = (220, 40, 40)
        offset = int(rng.integers(0, self.pixels))
        image += self.noise[offset : offset + self.pixels].reshape(image.shape)
        out = io.BytesIO()
        Image.fromarray(image, "RGB").save(out, format="JPEG", quality=self.quality)
        return out.getvalue()

    def take(self, first: int, count: int) -> pa.Array:
        """Frames ``first .. first + count - 1``, encoding those not yet kept."""
        with self.lock:
            while len(self.frames) < first + count:
                self.frames.append(self._encode(len(self.frames)))
            return pa.array(self.frames[first : first + count], pa.binary())


_sequences: OrderedDict[tuple[int, int, int, int, int], _FrameSequence] = OrderedDict()
_sequences_lock = threading.Lock()


def _sequence(seed: int, camera: int, width: int, height: int, quality: int) -> _FrameSequence:
    key = (seed, camera, width, height, quality)
    with _sequences_lock:
        found = _sequences.get(key)
        if found is None:
            found = _sequences[key] = _FrameSequence(seed, camera, width, height, quality)
            while len(_sequences) > SEQUENCES_KEPT:
                _sequences.popitem(last=False)
        _sequences.move_to_end(key)
        return found


def camera_frames(
    seed: int,
    camera: int,
    width: int,
    height: int,
    quality: int = 85,
    *,
    count: int,
    first: int = 0,
    cycle: int | None = None,
) -> pa.Array:
    """``count`` JPEG frames of one camera, all distinct: the camera's frames ``first % count``
    onwards, wrapping round within the first ``count`` (so episodes of the same ``seed`` and
    length start at different frames, yet none repeats within one). With ``cycle``, only the
    first ``cycle`` frames, for the caller to cycle through (:func:`image_table`)."""
    sequence = _sequence(seed, camera, width, height, quality)
    if cycle is not None:
        return sequence.take(0, min(cycle, count))
    start = first % count if count else 0
    head = sequence.take(start, count - start)
    return pa.concat_arrays([head, sequence.take(0, start)]) if start else head


@functools.lru_cache(maxsize=64)
def frame_pool(
    seed: int, camera: int, width: int, height: int, size: int, quality: int = 85
) -> pa.Array:
    """The first ``size`` distinct JPEG frames of one camera (see :class:`_FrameSequence`), kept
    once per process: JPEG sizes like a real indoor camera's (tens of KB at 640x480), not the
    few KB a flat image would give."""
    return _sequence(seed, camera, width, height, quality).take(0, size)
