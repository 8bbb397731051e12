"""ROS 2 bags (rosbag2 directories, bare ``.mcap`` or ``.db3``) read with ``rosbags``, no ROS.

Two passes, each streaming the bag message by message (memory bounded by the reorder window and
one batch per stream, never the bag):

1. :func:`scan` decodes every mapped message and checks it (encodings, frame sizes, joint names,
   stamps), learns what the manifest needs (time range, joint names, intrinsics, rates) and hashes
   the storage files. A truncated or damaged bag, an unknown type or a bad frame fails here,
   before anything is registered or spooled, with the byte offset or the message named.
2. :func:`batches` decodes again and yields ``(stream, pa.Table)`` batches in ``t_ns`` order per
   stream, skipping rows a previous, interrupted upload already spooled.

Time: ``header.stamp`` by default; ``log_time`` (when the recorder received the message) for
messages without a header, with a zero stamp, or when the mapping says ``time: log_time``.
Stamps may arrive slightly out of order; a window of :data:`REORDER_ROWS` messages (at most
:data:`REORDER_BYTES`) per stream puts them back in order, and a stamp that goes back further
fails the scan with a hint to use ``log_time`` for that topic.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import struct
import sys
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pyarrow as pa

from robolake.recordings.errors import CorruptRecording, RecordingError, UnsupportedMessage
from robolake.recordings.mapping import Resolution, TopicMapping, TopicRule, resolve
from robolake.recordings.messages import Converter, converter_for, frame_id, intrinsics, stamp_ns

log = logging.getLogger(__name__)

MCAP_MAGIC: Final = b"\x89MCAP0\r\n"
REORDER_ROWS: Final = 256
REORDER_BYTES: Final = 16 * 1024 * 1024
#: A batch handed to the capture client: this many rows or bytes, whichever comes first.
BATCH_ROWS: Final = 2048
BATCH_BYTES: Final = 1024 * 1024
_OPCODES: Final = {
    0x01: "Header", 0x02: "Footer", 0x03: "Schema", 0x04: "Channel", 0x05: "Message",
    0x06: "Chunk", 0x07: "MessageIndex", 0x08: "ChunkIndex", 0x09: "Attachment",
    0x0A: "AttachmentIndex", 0x0B: "Statistics", 0x0C: "Metadata", 0x0D: "MetadataIndex",
    0x0E: "SummaryOffset", 0x0F: "DataEnd",
}  # fmt: skip


def is_bag(path: Path) -> bool:
    """Whether ``path`` is something :func:`scan` reads: a rosbag2 directory or a bag file."""
    if path.is_dir():
        return (path / "metadata.yaml").is_file()
    return path.is_file() and path.suffix.lower() in (".mcap", ".db3")


def _metadata(path: Path) -> dict[str, Any]:
    """A rosbag2 directory's ``metadata.yaml``, its ``rosbag2_bagfile_information`` mapping."""
    from ruamel.yaml import YAML

    meta = path / "metadata.yaml"
    try:
        info = YAML(typ="safe", pure=True).load(meta.read_text(encoding="utf-8"))
        found = info["rosbag2_bagfile_information"]
        names = found["relative_file_paths"]
    except Exception as exc:  # OSError, YAML errors, a missing key: all mean a broken bag
        raise CorruptRecording(f"{meta}: not a rosbag2 metadata file ({exc})") from exc
    if not isinstance(found, dict) or not isinstance(names, list):
        raise CorruptRecording(f"{meta}: not a rosbag2 metadata file (no list of files)")
    return found


def storage_files(path: Path) -> list[Path]:
    """The files holding the bag's messages, in the bag's order (what the content hash covers)."""
    if not path.is_dir():
        return [path]
    meta = path / "metadata.yaml"
    files = [path / str(name) for name in _metadata(path)["relative_file_paths"]]
    absent = [str(f) for f in files if not f.is_file()]
    if absent:
        raise CorruptRecording(f"{meta} lists storage files that are missing: {absent}")
    return files


def content_digest(files: list[Path]) -> str:
    """sha256 over the storage files' bytes: the same recording, however named, hashes the same."""
    digest = hashlib.sha256()
    for file in files:
        with file.open("rb") as fh:
            while block := fh.read(4 * 1024 * 1024):
                digest.update(block)
    return digest.hexdigest()


def locate_mcap_damage(path: Path, *, inside_chunks: bool = False) -> str | None:
    """Walk an MCAP file's record framing; where it breaks, in bytes, or None if it is whole.

    The top-level walk reads 9 bytes per record (a seek per chunk), so :func:`scan` runs it on
    every bag before decoding: rosbags reads through the summary's chunk index and would
    otherwise accept a file whose framing is broken. With ``inside_chunks`` the records inside
    each chunk are walked too (and the chunk's CRC checked when it has one): that is only done
    to explain a read error, since it reads every chunk.
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        if fh.read(8) != MCAP_MAGIC:
            return "byte 0: not an MCAP file (no MCAP magic)"
        pos = 8
        while pos < size:
            head = fh.read(9)
            if len(head) < 9:
                return (
                    f"truncated at byte {size}: the record header at byte {pos} is cut off; "
                    f"the last complete record ends at byte {pos}"
                )
            opcode, length = head[0], struct.unpack("<Q", head[1:])[0]
            if opcode not in _OPCODES and opcode < 0x80:
                return f"byte {pos}: invalid MCAP record opcode 0x{opcode:02x} (damaged data)"
            end = pos + 9 + length
            if end > size:
                return (
                    f"truncated at byte {size}: the {_OPCODES.get(opcode, 'user')} record at byte "
                    f"{pos} needs {length} bytes, {end - size} more than the file has; the last "
                    f"complete record ends at byte {pos}"
                )
            if opcode == 0x06 and inside_chunks:
                found = _chunk_damage(fh.read(length), pos)
                if found:
                    return found
            if opcode == 0x02:
                fh.seek(end)
                if fh.read(8) == MCAP_MAGIC and end + 8 == size:
                    return None
                return f"byte {end}: the footer is not followed by the closing MCAP magic"
            fh.seek(end)
            pos = end
    return f"truncated at byte {size}: the file ends without the MCAP footer and closing magic"


def _chunk_damage(body: bytes, at: int) -> str | None:
    """Where the records inside the Chunk record at byte ``at`` (its ``body``) break, if they do.

    Offsets are the file's bytes for an uncompressed chunk, else offsets into the decompressed
    records (the file's bytes cannot be named inside a compressed stream).
    """
    where = f"the Chunk record at byte {at}"
    try:
        crc = struct.unpack_from("<I", body, 24)[0]
        name_len = struct.unpack_from("<I", body, 28)[0]
        compression = body[32 : 32 + name_len].decode()
        records_at = 32 + name_len + 8
        records_len = struct.unpack_from("<Q", body, 32 + name_len)[0]
    except (struct.error, UnicodeDecodeError):
        return f"byte {at}: {where} has a damaged header"
    if records_at + records_len > len(body):
        return (
            f"byte {at + 9 + records_at}: {where} says {records_len} bytes of records, more "
            "than it holds"
        )
    records = body[records_at : records_at + records_len]
    base = at + 9 + records_at
    if compression:
        try:
            records = _decompress(compression, records)
        except Exception as exc:  # each codec has its own error type
            return f"byte {base}: {where} does not decompress ({compression}: {exc})"
        base = -1
    if crc and zlib.crc32(records) != crc:
        return f"byte {at}: {where} fails its CRC check (its data is damaged)"
    pos = 0
    while pos < len(records):
        spot = f"byte {base + pos}" if base >= 0 else f"{where}, decompressed offset {pos}"
        if len(records) - pos < 9:
            return f"{spot}: a record header cut off inside {where}"
        opcode, length = records[pos], struct.unpack_from("<Q", records, pos + 1)[0]
        if opcode not in (0x03, 0x04, 0x05):
            return f"{spot}: opcode 0x{opcode:02x} cannot be inside {where} (damaged data)"
        if pos + 9 + length > len(records):
            return (
                f"{spot}: a {_OPCODES[opcode]} record of {length} bytes runs past the end of "
                f"{where}"
            )
        pos += 9 + length
    return None


def _decompress(compression: str, data: bytes) -> bytes:
    """The records of a compressed chunk, with the codecs rosbags itself depends on."""
    if compression == "zstd":
        if sys.version_info >= (3, 14):
            from compression import zstd
        else:
            from backports import zstd

        out: bytes = zstd.decompress(data)
        return out
    if compression == "lz4":
        import lz4.frame

        frame: bytes = lz4.frame.decompress(data)
        return frame
    raise ValueError(f"unknown chunk compression {compression!r}")


def _damage(path: Path, exc: BaseException, context: str = "") -> CorruptRecording:
    where = ""
    for file in storage_files(path) if path.exists() else []:
        if file.suffix.lower() == ".mcap" and file.is_file():
            found = locate_mcap_damage(file, inside_chunks=True)
            if found:
                where = f"{file}: {found}"
                break
    detail = where or f"{path}"
    return CorruptRecording(
        f"cannot read the bag: {detail} ({type(exc).__name__}: {exc}{context}); nothing was "
        "uploaded -- copy the recording again from the robot (a bag still being written has no "
        "footer yet)"
    )


def check_framing(files: list[Path]) -> None:
    """Refuse an MCAP storage file whose record framing is broken, naming the byte."""
    for file in files:
        if file.suffix.lower() == ".mcap":
            found = locate_mcap_damage(file)
            if found:
                raise CorruptRecording(
                    f"cannot read the bag: {file}: {found}; nothing was uploaded -- copy the "
                    "recording again from the robot (a bag still being written has no footer yet)"
                )


@dataclass
class StreamScan:
    """What the first pass learnt about one stream."""

    rule: TopicRule
    converter: Converter
    messages: int = 0
    t_min: int = 2**63 - 1
    t_max: int = -(2**63)
    log_time_rows: int = 0
    #: The largest serialized message, bytes: about the largest row, which must fit one chunk.
    largest_bytes: int = 0
    frame_id: str | None = None
    camera: dict[str, Any] | None = None

    @property
    def rate_hz(self) -> float:
        span = (self.t_max - self.t_min) / 1e9
        if self.messages > 1 and span > 0:
            return round((self.messages - 1) / span, 3)
        return 1.0


@dataclass
class BagScan:
    """The first pass over a bag: streams, what is not uploaded, and the content hash."""

    path: Path
    files: list[Path]
    digest: str
    resolution: Resolution
    streams: dict[str, StreamScan] = field(default_factory=dict)

    @property
    def t_min(self) -> int:
        return min(s.t_min for s in self.streams.values())

    @property
    def t_max(self) -> int:
        return max(s.t_max for s in self.streams.values())

    @property
    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files)


class _Reorder:
    """A small heap per stream that puts slightly out-of-order stamps back in order."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._heap: list[tuple[int, int, int, Any]] = []
        self._bytes = 0
        self._seq = 0
        self.last = -(2**63)

    def push(self, t_ns: int, size: int, item: Any, log_time: int) -> list[tuple[int, Any]]:
        heapq.heappush(self._heap, (t_ns, self._seq, size, item))
        self._seq += 1
        self._bytes += size
        out = []
        while len(self._heap) > REORDER_ROWS or self._bytes > REORDER_BYTES:
            out.append(self._pop(log_time))
        return out

    def _pop(self, log_time: int) -> tuple[int, Any]:
        t_ns, _, size, item = heapq.heappop(self._heap)
        self._bytes -= size
        if t_ns < self.last:
            raise UnsupportedMessage(
                f"topic {self.topic}: header stamps go back more than {REORDER_ROWS} messages "
                f"(a stamp {t_ns} after {self.last}, near log_time {log_time}); set "
                f"'time: log_time' for this topic in the mapping file"
            )
        self.last = t_ns
        return t_ns, item

    def drain(self) -> list[tuple[int, Any]]:
        return [self._pop(0) for _ in range(len(self._heap))]


def reads_storage_files(path: Path, files: list[Path]) -> bool:
    """Whether a bag directory is read through its MCAP files rather than its metadata.yaml.

    An uncompressed rosbag2 directory of MCAP files holds everything in the MCAP files
    themselves (channels, schemas, summary). rosbags 0.11.9 reading the directory matches
    metadata.yaml's topics to the MCAP channels by their QoS text as well, and so reads rosbag2's
    own ``talker`` test bag (metadata version 4) as empty; reading the files gives all of it.
    Directories with rosbag2-level compression or ``.db3`` storage are read as directories.
    """
    if not path.is_dir() or not files or any(f.suffix.lower() != ".mcap" for f in files):
        return False
    info = _metadata(path)
    return not info.get("compression_format") and not info.get("compression_mode")


def _reader(path: Path, files: list[Path]) -> Any:
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    sources = files if reads_storage_files(path, files) else [path]
    # Bags without embedded definitions (old .db3) decode with the newest standard types.
    return AnyReader(sources, default_typestore=get_typestore(Stores.LATEST))


def _messages(reader: Any, path: Path, topics: set[str]) -> Iterator[tuple[str, int, Any, int]]:
    """(topic, log_time, decoded message, raw size) of the ``topics``; errors name the spot."""
    connections = [c for c in reader.connections if c.topic in topics]
    if not connections:
        return
    it = reader.messages(connections=connections)
    count = 0
    last_time = None
    while True:
        try:
            item = next(it)
        except StopIteration:
            return
        except Exception as exc:  # rosbags' ReaderError, zstd/lz4 errors, struct errors
            context = f"; after {count} messages, last log_time {last_time}"
            raise _damage(path, exc, context) from exc
        connection, log_time, raw = item
        try:
            msg = reader.deserialize(raw, connection.msgtype)
        except Exception as exc:
            raise UnsupportedMessage(
                f"{path}: topic {connection.topic}: cannot decode a {connection.msgtype} message "
                f"at log_time {log_time} ({exc}); the bag's message definition may be missing "
                "or unknown -- ignore the topic in the mapping file"
            ) from exc
        count += 1
        last_time = log_time
        yield connection.topic, log_time, msg, len(raw)


def _time(rule: TopicRule, msg: Any, log_time: int) -> tuple[int, bool]:
    """(t_ns, whether log_time was used)."""
    if rule.time == "header":
        stamp = stamp_ns(msg)
        if stamp is not None:
            return stamp, False
    return log_time, True


def scan(path: Path, mapping: TopicMapping) -> BagScan:
    """The first pass (see the module docstring)."""
    if not path.exists():
        raise RecordingError(f"{path} does not exist")
    files = storage_files(path)
    check_framing(files)
    reader = _reader(path, files)
    try:
        reader.open()
    except Exception as exc:
        raise _damage(path, exc) from exc
    try:
        topics = {
            topic: (info.msgtype or "", info.msgcount) for topic, info in reader.topics.items()
        }
        resolution = resolve(mapping, topics)
        result = BagScan(path, files, "", resolution)
        by_topic: dict[str, list[TopicRule]] = {}
        for rule in resolution.rules:
            by_topic.setdefault(rule.topic, []).append(rule)
        index: dict[str, int] = {}
        reorder: dict[str, _Reorder] = {}
        cameras: dict[str, dict[str, Any] | None] = {}  # image stream -> its first CameraInfo
        for topic, log_time, msg, size in _messages(reader, path, set(by_topic)):
            i = index[topic] = index.get(topic, -1) + 1
            for rule in by_topic[topic]:
                if rule.intrinsics:
                    if rule.stream not in cameras:
                        cameras[rule.stream] = intrinsics(msg)
                    continue
                stream = result.streams.get(rule.stream)
                if stream is None:
                    stream = StreamScan(rule, converter_for(rule, msg), frame_id=frame_id(msg))
                    result.streams[rule.stream] = stream
                    reorder[rule.stream] = _Reorder(topic)
                stream.converter.check(msg, i)
                t_ns, fallback = _time(rule, msg, log_time)
                stream.messages += 1
                stream.log_time_rows += fallback
                stream.largest_bytes = max(stream.largest_bytes, size)
                stream.t_min = min(stream.t_min, t_ns)
                stream.t_max = max(stream.t_max, t_ns)
                reorder[rule.stream].push(t_ns, size, None, log_time)
        for name, order in reorder.items():
            order.drain()
            result.streams[name].camera = cameras.get(name)
        # The reader yields what it can match and stops at what it cannot; a bag whose index or
        # metadata promises more messages than came out would otherwise upload a silent subset.
        for topic in by_topic:
            read, declared = index.get(topic, -1) + 1, topics[topic][1]
            if read < declared:
                raise CorruptRecording(
                    f"{path}: the bag says topic {topic} has {declared} messages, but {read} "
                    "could be read: its index and its data disagree (a damaged or rewritten "
                    "bag); nothing was uploaded"
                )
    finally:
        reader.close()
    if not result.streams:
        listed = ", ".join(f"{u.topic} ({u.msgtype})" for u in resolution.unmapped) or "none"
        raise RecordingError(
            f"{path}: no topic maps to a stream, so there is nothing to upload (topics: {listed}); "
            "add them to a mapping file (--mapping)"
        )
    result.digest = content_digest(files)
    return result


def batches(
    scan_result: BagScan, skip: Mapping[str, int] | None = None
) -> Iterator[tuple[str, pa.Table]]:
    """The second pass: ``(stream, rows)`` batches in ``t_ns`` order per stream.

    ``skip[stream]`` rows of a stream (already spooled by an interrupted upload) are left out.
    """
    path = scan_result.path
    skip = dict(skip or {})
    streams = scan_result.streams
    by_topic: dict[str, list[StreamScan]] = {}
    for stream in streams.values():
        by_topic.setdefault(stream.rule.topic, []).append(stream)
    reorder = {name: _Reorder(s.rule.topic) for name, s in streams.items()}
    pending: dict[str, tuple[list[int], list[tuple[Any, ...]], list[int]]] = {
        name: ([], [], [0]) for name in streams
    }

    def take(name: str, emitted: list[tuple[int, Any]]) -> Iterator[tuple[str, pa.Table]]:
        t_list, rows, size = pending[name]
        for t_ns, (row, nbytes) in emitted:
            if skip.get(name, 0) > 0:
                skip[name] -= 1
                continue
            t_list.append(t_ns)
            rows.append(row)
            size[0] += nbytes
            if len(rows) >= BATCH_ROWS or size[0] >= BATCH_BYTES:
                yield name, streams[name].converter.table(t_list[:], rows[:])
                t_list.clear()
                rows.clear()
                size[0] = 0

    reader = _reader(path, scan_result.files)
    try:
        reader.open()
    except Exception as exc:
        raise _damage(path, exc) from exc
    try:
        for topic, log_time, msg, size in _messages(reader, path, set(by_topic)):
            for stream in by_topic[topic]:
                t_ns, _ = _time(stream.rule, msg, log_time)
                name = stream.rule.stream
                if skip.get(name, 0) >= stream.messages:
                    continue  # everything of this stream is spooled already
                row = stream.converter.row(msg)
                emitted = reorder[name].push(t_ns, size, (row, size), log_time)
                yield from take(name, emitted)
    finally:
        reader.close()
    for name in streams:
        if skip.get(name, 0) >= streams[name].messages:
            continue
        yield from take(name, reorder[name].drain())
        t_list, rows, _ = pending[name]
        if rows:
            yield name, streams[name].converter.table(t_list, rows)
