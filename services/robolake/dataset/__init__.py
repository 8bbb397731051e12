"""Reading the dataset: shards and the episodes index on S3, for ML teams and operators.

No service is needed: everything here reads the bucket directly, through pyarrow's S3
filesystem, so DuckDB, pandas or PyTorch can consume the same data. The object layout is the
shard contract (``schemas/shards.md``, ``robolake.episode.shards``). Modules:

- ``storage``        the S3 filesystem, dataset URLs, shards and index as pyarrow datasets
- ``episodes``       the index's current rows, :class:`EpisodeFilter`, :class:`EpisodeInfo`
- ``reader``         :class:`RobolakeDataset`: find episodes, read their streams
- ``align``          streams onto a fixed-rate timeline (as-of join on ``t_ns``)
- ``work_split``     which episodes a distributed rank and DataLoader worker reads
- ``pytorch``        a PyTorch ``IterableDataset`` of aligned frames (``robolake[ml]``)
- ``feature_stats``  per-episode statistics and their exact merge
- ``lerobot_export`` LeRobot v3.0 datasets, with ``video_encoding`` for the camera MP4s
- ``audit``          acknowledged chunks against the shards (demo and end-to-end tests)
- ``cli``            ``robolake episodes list|show`` and ``robolake export lerobot``

Optional dependencies (PyTorch, PyAV) are imported only by the modules that need them, with an
error naming the extra to install.
"""

from robolake.dataset.align import align_streams
from robolake.dataset.episodes import EpisodeFilter, EpisodeInfo, StreamInfo
from robolake.dataset.errors import DatasetError
from robolake.dataset.reader import RobolakeDataset

__all__ = [
    "DatasetError",
    "EpisodeFilter",
    "EpisodeInfo",
    "RobolakeDataset",
    "StreamInfo",
    "align_streams",
]
