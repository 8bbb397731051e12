"""An episode as training frames: its streams aligned to a fixed rate, numbered from zero.

Shared by the PyTorch dataset and the LeRobot export, so both see the same frames: the timeline
is the span every chosen stream covers (:func:`robolake.dataset.align.coverage`), frame ``k`` is
at ``first + k / rate``, and ``timestamp`` is ``k / rate`` seconds (what LeRobot expects: frame
times relative to the episode's first frame, on the video's time base).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from robolake.dataset.align import align_streams
from robolake.dataset.episodes import EpisodeInfo
from robolake.dataset.reader import RobolakeDataset


def default_streams(episode: EpisodeInfo) -> list[str]:
    """Every stream of the episode that stored rows."""
    return [s.name for s in episode.streams if s.rows > 0]


def episode_frames(
    data: RobolakeDataset,
    episode: EpisodeInfo,
    rate_hz: float,
    *,
    streams: Sequence[str] | None = None,
    tolerance_ns: int | None = None,
) -> pa.Table:
    """``episode_id``, ``frame_index``, ``timestamp`` then the aligned columns of the episode."""
    names = list(streams) if streams is not None else default_streams(episode)
    tables = data.read_episode(episode, names)
    aligned = align_streams(tables, rate_hz, tolerance_ns=tolerance_ns)
    count = aligned.num_rows
    index = np.arange(count, dtype=np.int64)
    front = {
        "episode_id": pa.array([episode.episode_id] * count, pa.string()),
        "frame_index": pa.array(index),
        "timestamp": pa.array((index / rate_hz).astype(np.float32)),
    }
    return pa.table({**front, **{name: aligned[name] for name in aligned.column_names}})
