"""Camera frames (JPEG/PNG/raw bytes from ``image.v1`` rows) to MP4, with PyAV's bundled FFmpeg.

PyAV wheels ship FFmpeg with libx264, so nothing is installed system-wide and no binary is
fetched at run time. Frames are decoded with Pillow and encoded at the dataset's frame rate with
presentation times ``0, 1, 2, …`` in a ``1/fps`` time base: frame ``k`` of the file is at ``k /
fps`` seconds, which is how LeRobot finds an episode's frames (``from_timestamp + timestamp``).
A short GOP keeps random access cheap for training-time decoding.
"""

from __future__ import annotations

import io
import logging
from fractions import Fraction
from pathlib import Path
from typing import Any, Final

import numpy as np
from PIL import Image

from robolake.dataset.errors import DatasetError, MissingExtraError

log = logging.getLogger(__name__)

DEFAULT_CODEC: Final = "libx264"
DEFAULT_PIX_FMT: Final = "yuv420p"
#: Keyframe every 2 frames (LeRobot's choice too): seeking to any frame decodes at most two.
DEFAULT_GOP: Final = 2
DEFAULT_CRF: Final = 23


def decode_image(data: bytes, encoding: str, width: int, height: int) -> np.ndarray[Any, Any]:
    """One ``image.v1`` frame as an RGB ``uint8`` array (height, width, 3)."""
    if encoding == "raw":
        return np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


class Mp4Writer:
    """One MP4 file of one camera; episodes are appended back to back."""

    def __init__(
        self,
        path: Path,
        *,
        fps: int,
        width: int,
        height: int,
        codec: str = DEFAULT_CODEC,
        crf: int = DEFAULT_CRF,
        gop: int = DEFAULT_GOP,
    ) -> None:
        try:
            import av
        except ImportError as exc:
            raise MissingExtraError("av", "encoding camera streams to MP4") from exc
        if width % 2 or height % 2:
            raise DatasetError(
                f"{width}x{height} frames cannot be encoded as {DEFAULT_PIX_FMT}, which needs even "
                "sizes; export without cameras (--no-videos) or record even frame sizes"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fps = fps
        self.width, self.height = width, height
        self.frames = 0
        self._container: Any = av.open(str(path), mode="w")
        stream: Any = self._container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = DEFAULT_PIX_FMT
        stream.time_base = Fraction(1, fps)
        stream.options = {"crf": str(crf), "g": str(gop)}
        self._stream = stream
        self._av = av

    @property
    def seconds(self) -> float:
        """Duration written so far: where the next frame goes."""
        return self.frames / self.fps

    def add(self, rgb: np.ndarray[Any, Any]) -> None:
        """Append one RGB frame."""
        if rgb.shape != (self.height, self.width, 3):
            raise DatasetError(
                f"frame of shape {rgb.shape} in a {self.width}x{self.height} video {self.path}; "
                "a camera changed resolution mid-dataset"
            )
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self.frames
        frame.time_base = Fraction(1, self.fps)
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the file (safe to call twice)."""
        if self._container is None:
            return
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        self._container = None
        log.info("wrote %s: %d frames", self.path, self.frames)

    def size_bytes(self) -> int:
        """Bytes on disk so far (the muxer writes as it goes)."""
        return self.path.stat().st_size if self.path.exists() else 0


def count_frames(path: Path) -> tuple[int, int, int]:
    """``(frames, width, height)`` of an MP4 by decoding it (for checks and tests)."""
    try:
        import av
    except ImportError as exc:
        raise MissingExtraError("av", "reading MP4 files") from exc
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return frames, int(stream.width), int(stream.height)
