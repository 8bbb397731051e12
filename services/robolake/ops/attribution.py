"""Shard bytes attributed to the episodes they hold.

The index says how many rows of each stream an episode stored, not how many bytes: a shard file
mixes many episodes of one stream type. So the bytes of an episode are computed from the shards
themselves: each file's size (what it costs on S3) is split between the episodes in it by their
share of its rows. Rows of one file are of one stream type, so they are of similar size (frames of
one camera family, joint vectors of one robot), which makes the row share a fair share of bytes.

Reading one file costs its Parquet footer and its ``episode_id`` column (dictionary-encoded and,
because shards are sorted by episode, run-length encoded: kilobytes for a 512 MiB file). Integer
bytes are apportioned by largest remainder, so the episodes of a file sum to its size exactly.
:class:`ShardAttribution` caches each file's split by (key, size, modification time): an
exporter rescanning the bucket reads only new or rewritten files.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from robolake.episode.shards import SHARDS_PREFIX, apportion

log = logging.getLogger(__name__)

#: Files whose ``episode_id`` column is read at once when new manifests appear.
READ_THREADS: Final = 16


@dataclass(frozen=True)
class StoredFile:
    """One object of the bucket, as listed."""

    key: str
    size: int
    mtime_ns: int


def list_files(fs: pafs.FileSystem, bucket: str, prefix: str) -> list[StoredFile]:
    """Every object under ``prefix`` (recursively), in key order."""
    selector = pafs.FileSelector(f"{bucket}/{prefix}", allow_not_found=True, recursive=True)
    files = []
    for info in fs.get_file_info(selector):
        if info.type != pafs.FileType.File:
            continue
        key = info.path.removeprefix(f"{bucket}/")
        mtime = info.mtime_ns if info.mtime_ns is not None else 0
        files.append(StoredFile(key, int(info.size or 0), int(mtime)))
    return sorted(files, key=lambda f: f.key)


def is_shard(key: str) -> bool:
    """Whether an object key is a Parquet shard (``shards/<type>/date=…/….parquet``)."""
    return key.startswith(f"{SHARDS_PREFIX}/") and key.endswith(".parquet")


def episode_rows(fs: pafs.FileSystem, bucket: str, key: str) -> dict[str, int]:
    """Rows per episode in one shard file."""
    with fs.open_input_file(f"{bucket}/{key}") as handle:
        column = pq.ParquetFile(handle).read(columns=["episode_id"])["episode_id"]
    counts = pc.value_counts(column)
    return {
        str(item["values"]): int(item["counts"])
        for item in counts.to_pylist()
        if item["values"] is not None
    }


class ShardAttribution:
    """Bytes per episode over a set of shard files, caching each file's split."""

    def __init__(self, fs: pafs.FileSystem, bucket: str) -> None:
        self._fs = fs
        self._bucket = bucket
        self._cache: dict[str, tuple[StoredFile, dict[str, int]]] = {}
        #: Per manifest path: its bytes per episode and the files it lists.
        self._manifests: dict[str, tuple[dict[str, int], list[StoredFile]]] = {}
        #: Per file key: how many known manifests list it.
        self._listed: dict[str, int] = {}

    def _cached(self, file: StoredFile) -> bool:
        cached = self._cache.get(file.key)
        return cached is not None and cached[0] == file

    def split(self, file: StoredFile) -> dict[str, int]:
        """The bytes of one file per episode in it (cached while the file is unchanged)."""
        cached = self._cache.get(file.key)
        if cached is not None and cached[0] == file:
            return cached[1]
        parts = apportion(file.size, episode_rows(self._fs, self._bucket, file.key))
        self._cache[file.key] = (file, parts)
        return parts

    def bytes_by_manifest(
        self, manifests: Mapping[str, Callable[[], Sequence[StoredFile]]]
    ) -> tuple[dict[str, int], int]:
        """Bytes per episode and the number of files over table manifests (path -> reader of
        the files it lists); forgets manifests not among them.

        A manifest never changes, so its totals are computed once, when it first appears: a
        rescan reads only new manifests, and costs the number of manifests, not of files.
        A file listed again by a rewritten manifest is not read again (its split is kept while
        any known manifest lists it).
        """
        new = {
            path: list(read()) for path, read in manifests.items() if path not in self._manifests
        }
        unread = {f.key: f for files in new.values() for f in files if not self._cached(f)}
        if unread:
            # A footer and a column per file, S3 round trips more than work: read them at once.
            with ThreadPoolExecutor(READ_THREADS) as pool:
                for _ in pool.map(self.split, unread.values()):
                    pass
        for path, files in new.items():
            parts: dict[str, int] = {}
            for file in files:
                self._listed[file.key] = self._listed.get(file.key, 0) + 1
                for episode, size in self.split(file).items():
                    parts[episode] = parts.get(episode, 0) + size
            self._manifests[path] = (parts, files)
        # Only now, so files a new manifest lists again keep their split.
        for path in set(self._manifests) - set(manifests):
            _, files = self._manifests.pop(path)
            for file in files:
                self._listed[file.key] -= 1
                if not self._listed[file.key]:
                    del self._listed[file.key]
                    self._cache.pop(file.key, None)
        totals: dict[str, int] = {}
        count = 0
        for parts, files in self._manifests.values():
            count += len(files)
            for episode, size in parts.items():
                totals[episode] = totals.get(episode, 0) + size
        return totals, count

    def bytes_by_episode(self, files: Iterable[StoredFile]) -> dict[str, int]:
        """Bytes per episode summed over ``files``; forgets cached files not among them."""
        totals: dict[str, int] = {}
        seen: set[str] = set()
        for file in files:
            seen.add(file.key)
            for episode, size in self.split(file).items():
                totals[episode] = totals.get(episode, 0) + size
        for key in set(self._cache) - seen:
            del self._cache[key]
        return totals
