"""A PyTorch ``IterableDataset`` of aligned frames, streamed from S3 episode by episode.

::

    frames = EpisodeFrameDataset("s3://robolake", rate_hz=30,
                                 criteria=EpisodeFilter(task="pick", complete=True),
                                 streams=["joint_state", "action"])
    loader = DataLoader(frames, batch_size=64, num_workers=4,
                        multiprocessing_context="forkserver")

The unit of work is an episode. Each process reads only its share (``work_split``:
by distributed rank, then by DataLoader worker), fetching just that episode's rows from the shard
files the index names -- nothing is downloaded ahead. Ranks come from explicit arguments, else an
initialised ``torch.distributed``, else ``RANK``/``WORLD_SIZE``. Ranks can receive different
numbers of frames; with DDP, bound an epoch by steps, not by exhausting the loader.

DataLoader workers must not be forked from the process that built the dataset: building it
reads the index, which initialises Arrow's S3 client, and that client is not fork-safe -- the AWS
SDK is set up once per process, with threads of its own, and a forked child inherits the set-up
state without the threads, so a request in it can wait forever (a full test run hung so, in a
forked worker). Each worker therefore opens S3 itself, in a process started clean: pass
``multiprocessing_context="forkserver"`` (or ``"spawn"``). A worker that finds itself forked
anyway refuses with :class:`~robolake.dataset.errors.DatasetError` naming the fix, before it
touches S3, instead of hanging some of the time.

PyTorch is an optional dependency (``pip install 'robolake[ml]'``); importing this module without
it raises :class:`~robolake.dataset.errors.MissingExtraError`.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from robolake.dataset.episodes import EpisodeFilter, EpisodeInfo
from robolake.dataset.errors import DatasetError, MissingExtraError
from robolake.dataset.frames import episode_frames
from robolake.dataset.reader import RobolakeDataset
from robolake.dataset.work_split import Slot, order, rank_from_env, units_for
from robolake.endpoints import Endpoints

try:
    import torch
    from torch.utils.data import IterableDataset, get_worker_info
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingExtraError("torch", "robolake.dataset.pytorch") from exc

log = logging.getLogger(__name__)


def _distributed_rank() -> tuple[int, int] | None:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return int(dist.get_rank()), int(dist.get_world_size())
    return None


class EpisodeFrameDataset(IterableDataset[dict[str, Any]]):
    """Frames of the selected episodes, each a dict: ``episode_id`` (str), ``frame_index``,
    ``timestamp``, ``t_ns`` and one entry per aligned column -- numeric vectors as tensors,
    image bytes decoded to ``uint8`` tensors (H, W, C) when ``decode_images``."""

    def __init__(
        self,
        url: str | None = None,
        *,
        rate_hz: float,
        criteria: EpisodeFilter | None = None,
        streams: Sequence[str] | None = None,
        endpoints: Endpoints | None = None,
        devices_file: Path | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        shuffle: bool = False,
        seed: int = 0,
        decode_images: bool = False,
        tolerance_ns: int | None = None,
    ) -> None:
        super().__init__()
        data = RobolakeDataset.open(url, endpoints=endpoints, devices_file=devices_file)
        self.endpoints = data.endpoints
        self.organisations = data.organisations
        self.episodes: list[EpisodeInfo] = data.episodes(criteria)
        self.rate_hz = rate_hz
        self.streams = list(streams) if streams is not None else None
        if rank is None or world_size is None:
            rank, world_size = _distributed_rank() or rank_from_env()
        self.rank, self.world_size = rank, world_size
        Slot(rank=rank, world_size=world_size)  # validates
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self.decode_images = decode_images
        self.tolerance_ns = tolerance_ns
        #: The process allowed to iterate: this one, or the one that unpickled a copy.
        self._home_pid = os.getpid()
        log.info("%d episodes selected for rank %d of %d", len(self.episodes), rank, world_size)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A spawned or forkserver worker receives the dataset pickled: it starts clean and may
        open S3; a forked worker receives it by copied memory and never passes here."""
        self.__dict__.update(state)
        self._home_pid = os.getpid()

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for a new epoch (same order on every rank)."""
        self.epoch = epoch

    def slot(self) -> Slot:
        """This process's place among ranks and DataLoader workers."""
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return Slot(self.rank, self.world_size, worker, workers)

    def my_episodes(self) -> list[EpisodeInfo]:
        """The episodes this rank and worker read, in reading order."""
        units = order(self.episodes, shuffle=self.shuffle, seed=self.seed, epoch=self.epoch)
        return units_for(units, self.slot())

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if os.getpid() != self._home_pid:
            raise DatasetError(
                f"EpisodeFrameDataset iterated in process {os.getpid()}, forked from process "
                f"{self._home_pid} that built it: Arrow's S3 client does not survive a fork and "
                "can hang here; give the DataLoader multiprocessing_context='forkserver' (or "
                "'spawn') so each worker starts clean"
            )
        # Opened here, in the iterating process, never inherited: each worker has its own client.
        data = RobolakeDataset(self.endpoints, organisations=self.organisations)
        for episode in self.my_episodes():
            table = episode_frames(
                data, episode, self.rate_hz, streams=self.streams, tolerance_ns=self.tolerance_ns
            )
            yield from self._rows(table)

    def _rows(self, table: pa.Table) -> Iterator[dict[str, Any]]:
        columns = {name: self._column(table[name]) for name in table.column_names}
        for i in range(table.num_rows):
            yield {name: values[i] for name, values in columns.items()}

    def _column(self, column: pa.ChunkedArray) -> Any:
        """A whole column converted once: numeric vectors to one tensor, the rest to lists."""
        array = column.combine_chunks()
        kind = array.type
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            values = array.to_pylist()
            return [_decode(v) for v in values] if self.decode_images else values
        if (pa.types.is_integer(kind) or pa.types.is_floating(kind)) and array.null_count == 0:
            return torch.from_numpy(array.to_numpy(zero_copy_only=False).copy())
        if (pa.types.is_list(kind) or pa.types.is_fixed_size_list(kind)) and array.null_count == 0:
            matrix = _matrix(array)
            if matrix is not None:
                return torch.from_numpy(matrix)
        return array.to_pylist()


def _matrix(array: pa.Array) -> np.ndarray[Any, Any] | None:
    """A list array of equal-length numeric lists as a 2-D array (None if ragged or not numeric)."""
    if len(array) == 0:
        return None
    values = array.flatten()
    if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
        return None
    if values.null_count or len(values) % len(array):
        return None
    width = len(values) // len(array)
    lengths = pc.list_value_length(array).to_numpy()
    if (lengths != width).any():
        return None
    matrix: np.ndarray[Any, Any] = values.to_numpy(zero_copy_only=False)
    return matrix.reshape(len(array), width).copy()


def _decode(data: bytes | None) -> Any:
    """Encoded image bytes (JPEG/PNG) to a ``uint8`` tensor, height x width x channels."""
    if data is None:
        return None
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return torch.from_numpy(np.asarray(image.convert("RGB")).copy())
