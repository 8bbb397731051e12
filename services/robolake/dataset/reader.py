"""``RobolakeDataset``: the dataset at an ``s3://`` URL, as ML code wants it.

::

    data = RobolakeDataset.open("s3://robolake")             # ROBOLAKE_S3_* for the endpoint
    for episode in data.episodes(EpisodeFilter(scenes=("warehouse",), complete=True)):
        streams = data.read_episode(episode)                   # {stream: Arrow table by t_ns}
        frames = align_streams(streams, rate_hz=30)            # one row per tick

Nothing is downloaded wholesale: the index is one small table, and an episode's rows are read
from the shard files its index row lists, row groups pruned by ``episode_id`` statistics.
A chunk stored twice (a retry after the writer's dedup window) is read once: the unique key
(episode, stream, seq) keeps the copy in the first file.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from robolake.dataset import storage
from robolake.dataset.episodes import (
    EpisodeFilter,
    EpisodeInfo,
    episode_infos,
    filter_index,
    manifest_document,
    newest_rows,
    read_index,
    with_organisation,
)
from robolake.dataset.errors import DatasetError
from robolake.endpoints import Endpoints
from robolake.episode.manifest import EpisodeManifest, parse_manifest
from robolake.episode.shards import KEY_COLUMNS, shard_schema
from robolake.episode.stream_types import StreamTypeRegistry, default_registry

log = logging.getLogger(__name__)


class RobolakeDataset:
    """Episodes, their streams and manifests, read straight from the bucket."""

    def __init__(
        self,
        endpoints: Endpoints,
        *,
        organisations: Mapping[str, str] | None = None,
        devices_file: Path | None = None,
        registry: StreamTypeRegistry | None = None,
        snapshots: Mapping[str, int] | None = None,
    ) -> None:
        """``snapshots`` (table name -> snapshot id) pins every read to those snapshots of the
        Iceberg tables: a training run that records them reads the same rows next year."""
        self.endpoints = endpoints
        self.snapshots = dict(snapshots) if snapshots is not None else None
        #: For index rows without an organisation only (the legacy fallback,
        #: :func:`~robolake.dataset.episodes.legacy_organisations`): a device → organisation
        #: map if given, else the device registry file, opened only if such a row exists.
        self.organisations = dict(organisations or {})
        self.devices_file = devices_file
        self.registry = registry if registry is not None else default_registry()
        self._filesystem = storage.s3_filesystem(endpoints)
        self._index: pa.Table | None = None
        self._plans: storage.Plans = {}

    @classmethod
    def open(
        cls,
        url: str | None = None,
        *,
        endpoints: Endpoints | None = None,
        devices_file: Path | None = None,
        snapshots: Mapping[str, int] | None = None,
    ) -> RobolakeDataset:
        """The dataset at ``s3://BUCKET`` (default: ``ROBOLAKE_S3_BUCKET``); endpoint and
        credentials from ``endpoints`` or the environment. Organisations come from the index;
        ``devices_file`` (the collectors' device registry) is only the legacy fallback for rows
        written before the index had them, and is not opened unless such a row exists."""
        return cls(
            storage.endpoints_for_url(url, endpoints),
            devices_file=devices_file,
            snapshots=snapshots,
        )

    @property
    def url(self) -> str:
        return f"s3://{self.endpoints.s3_bucket}"

    def pinned(self, as_of: dt.datetime | None = None) -> RobolakeDataset:
        """This dataset pinned to the tables' current snapshots (or those current at
        ``as_of``); ``.snapshots`` of the result is what to record with a training run."""
        pins = (
            storage.current_snapshots(self.endpoints)
            if as_of is None
            else storage.snapshots_as_of(self.endpoints, as_of)
        )
        return RobolakeDataset(
            self.endpoints,
            organisations=self.organisations,
            devices_file=self.devices_file,
            registry=self.registry,
            snapshots=pins,
        )

    # -- the index --------------------------------------------------------------------------
    def index(self, *, refresh: bool = False) -> pa.Table:
        """The current index row of every episode, with ``organisation``; read once, cached."""
        if self._index is None or refresh:
            table = read_index(self.endpoints, snapshots=self.snapshots)
            legacy = self.organisations or self.devices_file
            self._index = with_organisation(table, legacy)
            log.info("episodes index of %s: %d episodes", self.url, self._index.num_rows)
        return self._index

    def select(self, criteria: EpisodeFilter | None = None) -> pa.Table:
        """Index rows of the episodes meeting ``criteria``, sorted by episode id.

        With the index not read yet, ``criteria`` is pushed down to the tables' partitions and
        statistics (:func:`~robolake.dataset.episodes.read_index`), so a selective query over a
        million episodes reads the files that can hold its answer, not the index.
        """
        if criteria is None:
            return self.index()
        if self._index is not None:
            return filter_index(self._index, criteria)
        table = read_index(self.endpoints, snapshots=self.snapshots, criteria=criteria)
        legacy = self.organisations or self.devices_file
        return filter_index(with_organisation(table, legacy), criteria)

    def episodes(self, criteria: EpisodeFilter | None = None) -> list[EpisodeInfo]:
        """The episodes meeting ``criteria``, sorted by episode id (= by creation time)."""
        return episode_infos(self.select(criteria))

    def episode(self, episode_id: str) -> EpisodeInfo:
        """One episode by id; a :class:`DatasetError` if the index has no such episode."""
        found = episode_infos(filter_index(self.index(), EpisodeFilter(episode_ids=(episode_id,))))
        if not found:
            raise DatasetError(f"episode {episode_id} is not in the index of {self.url}")
        return found[0]

    def manifest(self, episode: EpisodeInfo | str) -> EpisodeManifest:
        """The manifest the device sent (joint names, camera intrinsics, software versions)."""
        episode_id = episode if isinstance(episode, str) else episode.episode_id
        if not storage.has_index(self.endpoints, snapshots=self.snapshots):
            raise DatasetError(f"{self.url} has no episodes index")
        rows = storage.episodes_index(self.endpoints, snapshots=self.snapshots).to_table(
            filter=pc.field("episode_id") == episode_id
        )
        if rows.num_rows == 0:
            raise DatasetError(f"episode {episode_id} is not in the index of {self.url}")
        return parse_manifest(manifest_document(newest_rows(rows)), self.registry)

    # -- streams ----------------------------------------------------------------------------
    def read_stream(
        self,
        episode: EpisodeInfo | str,
        stream: str,
        *,
        columns: Sequence[str] | None = None,
        with_keys: bool = False,
    ) -> pa.Table:
        """One stream of one episode, sorted by ``t_ns``: the stream type's fields (the columns
        the device sent), plus the key columns if ``with_keys``."""
        info = self.episode(episode) if isinstance(episode, str) else episode
        decl = info.stream(stream)
        stream_type = self.registry.get(decl.type, decl.type_version)
        fields = list(columns) if columns is not None else stream_type.wire_schema.names
        if "t_ns" not in fields:
            fields = ["t_ns", *fields]
        wanted = [*KEY_COLUMNS, *[f for f in fields if f not in KEY_COLUMNS]]
        files = info.shard_files_of(decl.stream_type_key)
        pieces = storage.read_shard_rows(
            self.endpoints,
            files,
            episode_id=info.episode_id,
            stream=stream,
            columns=wanted,
            filesystem=self._filesystem,
            stream_type=decl.stream_type_key,
            snapshots=self.snapshots,
            plans=self._plans,
        )
        full = shard_schema(stream_type)
        table = _first_copy_of_each_chunk(pieces, pa.schema([full.field(n) for n in wanted]))
        table = table.sort_by([("t_ns", "ascending"), ("seq", "ascending")])
        if not with_keys:
            table = table.select(fields)
        return table.combine_chunks()

    def read_episode(
        self, episode: EpisodeInfo | str, streams: Sequence[str] | None = None
    ) -> dict[str, pa.Table]:
        """Every stream of an episode (or the named ones) as Arrow tables sorted by ``t_ns``;
        declared streams with no stored rows are left out."""
        info = self.episode(episode) if isinstance(episode, str) else episode
        names = list(streams) if streams is not None else [s.name for s in info.streams]
        result = {}
        for name in names:
            if info.stream(name).rows == 0 and streams is None:
                continue
            result[name] = self.read_stream(info, name)
        return result


def _first_copy_of_each_chunk(pieces: list[pa.Table], schema: pa.Schema) -> pa.Table:
    """Concatenate per-file tables, keeping each ``seq`` only from the first file that has it."""
    kept: list[pa.Table] = []
    seen: set[int] = set()
    for piece in pieces:
        if piece.num_rows == 0:
            continue
        seqs = piece["seq"].to_numpy()
        unique = set(np.unique(seqs).tolist())
        repeated = unique & seen
        if repeated:
            log.info("dropping %d chunk(s) stored twice", len(repeated))
            mask = ~np.isin(seqs, np.fromiter(repeated, dtype=np.int64))
            piece = piece.filter(pa.array(mask))
        seen |= unique
        kept.append(piece)
    if not kept:
        return schema.empty_table()
    return pa.concat_tables(kept, promote_options="default")
