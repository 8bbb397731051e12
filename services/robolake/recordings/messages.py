"""Decoded ROS 2 messages -> rows of the contract's stream types, one converter per message type.

A converter is made from a topic's first message (which fixes what the stream is: the joint
names, an image stream or a depth stream), :meth:`Converter.check` validates every message on
the first pass (so a bad message fails the upload before anything is registered or spooled), and
:meth:`Converter.row` / :meth:`Converter.table` build the Arrow rows on the second. Rows are
built from numpy views of the decoded messages; images are copied once, into the row.

Raw ``Image`` encodings: rgb8 -> ``image`` raw (packed RGB), bgr8 -> ``image`` raw with the
channels swapped, mono8 -> ``image`` png (8-bit greyscale, lossless; ``image.v1`` has no raw
greyscale), 16UC1 -> ``depth_image`` raw16 (little-endian, ``depth_scale`` metres per unit,
default 0.001), 32FC1 -> ``depth_image`` raw32f. ``CompressedImage`` -> ``image`` jpeg or png,
recognised from the bytes, with width and height read from the image header.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pyarrow as pa

from robolake.episode.stream_types import default_registry
from robolake.recordings.errors import UnsupportedMessage
from robolake.recordings.mapping import TopicRule

RGB_ENCODINGS: Final = frozenset({"rgb8", "bgr8", "mono8"})
DEPTH_ENCODINGS: Final = frozenset({"16UC1", "mono16", "32FC1"})


def stamp_ns(msg: Any) -> int | None:
    """``header.stamp`` in ns, or None when the message has no header or a zero stamp."""
    header = getattr(msg, "header", None)
    if header is None:
        return None
    ns = int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
    return ns or None


def frame_id(msg: Any) -> str | None:
    header = getattr(msg, "header", None)
    frame = getattr(header, "frame_id", None) if header is not None else None
    return str(frame) if frame else None


def _schema(stream_type: str) -> pa.Schema:
    schema: pa.Schema = default_registry().get(stream_type, 1).wire_schema
    return schema


def stream_schema(stream_type: str) -> pa.Schema:
    """The wire schema of version 1 of ``stream_type``, which every converter's rows take."""
    return _schema(stream_type)


def _fixed(rows: list[Any], width: int) -> pa.FixedSizeListArray:
    values = np.asarray(rows, dtype=np.float32).reshape(-1)
    return pa.FixedSizeListArray.from_arrays(pa.array(values), width)


@dataclass
class Converter:
    """Base: one topic's messages -> rows of ``stream_type``."""

    rule: TopicRule
    stream_type: str = ""

    def fail(self, index: int, what: str) -> UnsupportedMessage:
        return UnsupportedMessage(
            f"topic {self.rule.topic} ({self.rule.msgtype}), message {index}: {what}"
        )

    def check(self, msg: Any, index: int) -> None:
        """Raise :class:`UnsupportedMessage` if ``msg`` cannot become a row of this stream."""

    def row(self, msg: Any) -> tuple[Any, ...]:
        raise NotImplementedError

    def table(self, t_ns: list[int], rows: list[tuple[Any, ...]]) -> pa.Table:
        raise NotImplementedError

    def elements(self) -> list[str] | None:
        return None


@dataclass
class JointStateConverter(Converter):
    names: tuple[str, ...] = ()
    order: tuple[int, ...] | None = None  # permutation of the current message's names, cached

    def __post_init__(self) -> None:
        self.stream_type = "joint_state"

    @classmethod
    def first(cls, rule: TopicRule, msg: Any) -> JointStateConverter:
        conv = cls(rule, names=tuple(str(n) for n in msg.name))
        if not conv.names:
            raise conv.fail(0, "a JointState without joint names; robolake needs the names")
        if len(set(conv.names)) != len(conv.names):
            raise conv.fail(0, f"joint names repeat: {list(conv.names)}")
        return conv

    def elements(self) -> list[str] | None:
        return list(self.names)

    def _permutation(self, msg: Any, index: int) -> tuple[int, ...] | None:
        names = tuple(msg.name)
        if names == self.names:
            return None
        if sorted(names) != sorted(self.names):
            raise self.fail(
                index,
                f"joint names {list(names)} differ from the first message's {list(self.names)}; "
                "map the topics of different joint groups to different streams",
            )
        where = {n: i for i, n in enumerate(names)}
        return tuple(where[n] for n in self.names)

    def check(self, msg: Any, index: int) -> None:
        self._permutation(msg, index)
        n = len(self.names)
        if len(msg.position) != n:
            raise self.fail(index, f"{len(msg.position)} positions for {n} joints")
        for field in ("velocity", "effort"):
            got = len(getattr(msg, field))
            if got not in (0, n):
                raise self.fail(index, f"{got} {field} values for {n} joints (0 or {n})")

    def row(self, msg: Any) -> tuple[Any, ...]:
        perm = self._permutation(msg, -1)

        def pick(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any] | None:
            if len(values) == 0:
                return None
            array = np.asarray(values, dtype=np.float32)
            return array if perm is None else array[list(perm)]

        return (pick(msg.position), pick(msg.velocity), pick(msg.effort))

    def table(self, t_ns: list[int], rows: list[tuple[Any, ...]]) -> pa.Table:
        kind = pa.list_(pa.float32())
        columns = [pa.array(t_ns, pa.int64())] + [
            pa.array([r[i] for r in rows], kind) for i in range(3)
        ]
        return pa.Table.from_arrays(columns, schema=_schema("joint_state"))


@dataclass
class ImuConverter(Converter):
    def __post_init__(self) -> None:
        self.stream_type = "imu"

    def row(self, msg: Any) -> tuple[Any, ...]:
        av, la, q = msg.angular_velocity, msg.linear_acceleration, msg.orientation
        # REP 145: orientation_covariance[0] == -1 means the IMU gives no orientation.
        has_q = not (len(msg.orientation_covariance) and msg.orientation_covariance[0] == -1)
        return ((av.x, av.y, av.z), (la.x, la.y, la.z), (q.x, q.y, q.z, q.w) if has_q else None)

    def table(self, t_ns: list[int], rows: list[tuple[Any, ...]]) -> pa.Table:
        mask = np.array([r[2] is None for r in rows])
        quats = [r[2] if r[2] is not None else (0.0, 0.0, 0.0, 0.0) for r in rows]
        orientation = _fixed(quats, 4)
        if mask.any():
            orientation = pa.FixedSizeListArray.from_arrays(
                orientation.values, 4, mask=pa.array(mask)
            )
        columns = [
            pa.array(t_ns, pa.int64()),
            _fixed([r[0] for r in rows], 3),
            _fixed([r[1] for r in rows], 3),
            orientation,
        ]
        return pa.Table.from_arrays(columns, schema=_schema("imu"))


@dataclass
class PoseConverter(Converter):
    def __post_init__(self) -> None:
        self.stream_type = "pose"

    def row(self, msg: Any) -> tuple[Any, ...]:
        p, q = msg.pose.position, msg.pose.orientation
        return ((p.x, p.y, p.z), (q.x, q.y, q.z, q.w))

    def table(self, t_ns: list[int], rows: list[tuple[Any, ...]]) -> pa.Table:
        columns = [
            pa.array(t_ns, pa.int64()),
            _fixed([r[0] for r in rows], 3),
            _fixed([r[1] for r in rows], 4),
        ]
        return pa.Table.from_arrays(columns, schema=_schema("pose"))


@dataclass
class EventConverter(Converter):
    def __post_init__(self) -> None:
        self.stream_type = "event"

    def row(self, msg: Any) -> tuple[Any, ...]:
        return (str(msg.data),)

    def table(self, t_ns: list[int], rows: list[tuple[Any, ...]]) -> pa.Table:
        n = len(rows)
        columns = [
            pa.array(t_ns, pa.int64()),
            pa.array([self.rule.kind] * n, pa.string()),
            pa.array([r[0] for r in rows], pa.string()),
            pa.nulls(n, pa.float32()),
        ]
        return pa.Table.from_arrays(columns, schema=_schema("event"))


_BYTES_PER_PIXEL: Final = {"rgb8": 3, "bgr8": 3, "mono8": 1, "16UC1": 2, "mono16": 2, "32FC1": 4}


@dataclass
class RawImageConverter(Converter):
    """``sensor_msgs/msg/Image``: an image stream (rgb8, bgr8, mono8) or a depth stream."""

    depth: bool = False

    def __post_init__(self) -> None:
        self.stream_type = "depth_image" if self.depth else "image"

    @classmethod
    def first(cls, rule: TopicRule, msg: Any) -> RawImageConverter:
        encoding = str(msg.encoding)
        if encoding not in RGB_ENCODINGS | DEPTH_ENCODINGS:
            raise UnsupportedMessage(
                f"topic {rule.topic} (sensor_msgs/msg/Image), message 0: encoding {encoding!r} "
                f"is not supported; robolake takes {', '.join(sorted(RGB_ENCODINGS))} as image "
                f"and {', '.join(sorted(DEPTH_ENCODINGS))} as depth_image (ignore the topic in "
                "the mapping file, or convert it on the device)"
            )
        return cls(rule, depth=encoding in DEPTH_ENCODINGS)

    def _pixels(self, msg: Any, index: int) -> np.ndarray[Any, Any]:
        encoding = str(msg.encoding)
        family = DEPTH_ENCODINGS if self.depth else RGB_ENCODINGS
        if encoding not in family:
            raise self.fail(
                index,
                f"encoding {encoding!r} in a {self.stream_type} stream whose first frame was "
                f"{'/'.join(sorted(family))}: a topic's frames must keep one kind of encoding",
            )
        width, height, step = int(msg.width), int(msg.height), int(msg.step)
        bpp = _BYTES_PER_PIXEL[encoding]
        data = np.asarray(msg.data, dtype=np.uint8)
        if width < 1 or height < 1 or step < width * bpp or len(data) != step * height:
            raise self.fail(
                index,
                f"{len(data)} data bytes do not fit {width}x{height} {encoding} with step {step} "
                f"(expected step >= {width * bpp} and step*height = {step * height} bytes)",
            )
        return data.reshape(height, step)[:, : width * bpp]

    def check(self, msg: Any, index: int) -> None:
        self._pixels(msg, index)

    def row(self, msg: Any) -> tuple[Any, ...]:
        rows = self._pixels(msg, -1)
        encoding = str(msg.encoding)
        width, height = int(msg.width), int(msg.height)
        if encoding == "rgb8":
            return raw_rgb_row(rows.reshape(height, width, 3))
        if encoding == "bgr8":
            return ("raw", width, height, rows.reshape(height, width, 3)[:, :, ::-1].tobytes())
        if encoding == "mono8":
            from PIL import Image

            out = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(rows), "L").save(
                out, format="PNG", compress_level=1
            )
            return ("png", width, height, out.getvalue())
        if encoding in ("16UC1", "mono16"):
            values = rows.copy().view(">u2" if msg.is_bigendian else "<u2")
            return ("raw16", width, height, values.astype("<u2").tobytes(), self.rule.depth_scale)
        values = rows.copy().view(">f4" if msg.is_bigendian else "<f4")
        return ("raw32f", width, height, values.astype("<f4").tobytes(), 1.0)

    def table(self, t_ns: list[int], rows: list[tuple[Any, ...]]) -> pa.Table:
        return image_table(self.stream_type, t_ns, rows)


def raw_rgb_row(pixels: np.ndarray[Any, Any]) -> tuple[str, int, int, bytes]:
    """An ``image`` row of packed 8-bit RGB pixels (height x width x 3), as ``rgb8`` frames are;
    HDF5 episodes' raw camera frames take the same path."""
    height, width = int(pixels.shape[0]), int(pixels.shape[1])
    return ("raw", width, height, np.ascontiguousarray(pixels, dtype=np.uint8).tobytes())


def image_table(stream_type: str, t_ns: list[int], rows: list[tuple[Any, ...]]) -> pa.Table:
    """Rows ``(encoding, width, height, data[, depth_scale])`` as an ``image`` or
    ``depth_image`` table: one builder for every recording format's frames."""
    columns = [
        pa.array(t_ns, pa.int64()),
        pa.array([r[0] for r in rows], pa.string()),
        pa.array([r[1] for r in rows], pa.int32()),
        pa.array([r[2] for r in rows], pa.int32()),
    ]
    if stream_type == "depth_image":
        columns.append(pa.array([r[4] for r in rows], pa.float32()))
    columns.append(pa.array([r[3] for r in rows], pa.binary()))
    return pa.Table.from_arrays(columns, schema=_schema(stream_type))


def encoded_image(data: bytes) -> tuple[str, int, int]:
    """``(encoding, width, height)`` of JPEG or PNG bytes, from the image header alone.

    Raises ValueError saying what is wrong, for the caller to name its topic or dataset.
    """
    if data[:3] == b"\xff\xd8\xff":
        encoding = "jpeg"
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        encoding = "png"
    else:
        raise ValueError(f"the bytes are neither JPEG nor PNG (starts with {data[:8].hex()})")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            width, height = image.size
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"the {encoding} header cannot be read: {exc}") from exc
    return encoding, width, height


@dataclass
class CompressedImageConverter(Converter):
    def __post_init__(self) -> None:
        self.stream_type = "image"

    def _decode(self, msg: Any, index: int) -> tuple[str, int, int, bytes]:
        data = bytes(np.asarray(msg.data, dtype=np.uint8))
        try:
            encoding, width, height = encoded_image(data)
        except ValueError as exc:
            raise self.fail(
                index,
                f"format {msg.format!r}: {exc}; compressedDepth and video codecs are not supported",
            ) from exc
        return encoding, width, height, data

    def check(self, msg: Any, index: int) -> None:
        self._decode(msg, index)

    def row(self, msg: Any) -> tuple[Any, ...]:
        return self._decode(msg, -1)

    def table(self, t_ns: list[int], rows: list[tuple[Any, ...]]) -> pa.Table:
        return image_table("image", t_ns, rows)


def converter_for(rule: TopicRule, first: Any) -> Converter:
    """The converter of ``rule``'s topic, fixed by its first decoded message."""
    if rule.msgtype == "sensor_msgs/msg/JointState":
        return JointStateConverter.first(rule, first)
    if rule.msgtype == "sensor_msgs/msg/Image":
        return RawImageConverter.first(rule, first)
    simple: dict[str, type[Converter]] = {
        "sensor_msgs/msg/Imu": ImuConverter,
        "geometry_msgs/msg/PoseStamped": PoseConverter,
        "std_msgs/msg/String": EventConverter,
        "sensor_msgs/msg/CompressedImage": CompressedImageConverter,
    }
    return simple[rule.msgtype](rule)


def intrinsics(msg: Any) -> dict[str, Any] | None:
    """The manifest's ``camera`` block from a ``CameraInfo``; None for an uncalibrated camera."""
    k = [float(v) for v in msg.k]
    if len(k) != 9 or k[0] <= 0 or k[4] <= 0 or msg.width < 1 or msg.height < 1:
        return None
    camera: dict[str, Any] = {
        "width": int(msg.width),
        "height": int(msg.height),
        "fx": k[0],
        "fy": k[4],
        "cx": k[2],
        "cy": k[5],
    }
    model = str(msg.distortion_model)
    if model in ("plumb_bob", "rational_polynomial", "equidistant"):
        camera["distortion_model"] = model
        camera["distortion"] = [float(v) for v in msg.d][:16]
    frame = frame_id(msg)
    if frame:
        camera["frame_id"] = frame[:128]
    return camera
