"""Open the shards and the episodes index of a bucket as pyarrow datasets.

This is the one place that knows how to reach the dataset on S3: the audit, the operators'
inventory and the ML readers all open objects through :func:`s3_filesystem`, so endpoint,
credentials and addressing style are decided once (``ROBOLAKE_S3_*`` through
:class:`~robolake.endpoints.Endpoints`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Final
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from robolake.dataset.errors import DatasetError
from robolake.endpoints import Endpoints
from robolake.episode.shards import episodes_index as index_description

log = logging.getLogger(__name__)

SHARDS_PREFIX: Final = "shards"
INDEX_PREFIX: Final = "index/episodes"


def s3_filesystem(endpoints: Endpoints) -> pafs.S3FileSystem:
    """pyarrow's S3 filesystem for the endpoints (path-style addressing, as MinIO wants).

    Timeouts are explicit: once in a full test run (2026-11-22) a dataset listing waited
    forever on an S3 request with the AWS event loop idle; with a request timeout such a request
    fails and the SDK's retry sends it again instead of hanging the reader.
    """
    return pafs.S3FileSystem(
        access_key=endpoints.s3_access_key,
        secret_key=endpoints.s3_secret_key,
        endpoint_override=endpoints.s3_host,
        scheme="https" if endpoints.s3_secure else "http",
        region=endpoints.s3_region,
        force_virtual_addressing=False,
        connect_timeout=10.0,
        request_timeout=120.0,
    )


def bucket_from_url(url: str) -> str:
    """The bucket of a dataset URL, ``s3://bucket`` (a trailing slash is fine).

    The writer lays the dataset out at the root of its bucket, so a URL with a path below the
    bucket names no dataset; saying so early beats an empty listing later.
    """
    parsed = urlparse(url)
    path = parsed.path.strip("/")
    if parsed.scheme != "s3" or not parsed.netloc or path or parsed.query or parsed.fragment:
        raise DatasetError(
            f"dataset URL {url!r} is not of the form s3://BUCKET; the dataset lives at the root "
            "of its bucket (endpoint and credentials come from the ROBOLAKE_S3_* variables)"
        )
    return parsed.netloc


def endpoints_for_url(url: str | None, endpoints: Endpoints | None = None) -> Endpoints:
    """Endpoints pointing at the bucket of ``url``; without a URL, ``ROBOLAKE_S3_BUCKET``'s."""
    base = endpoints if endpoints is not None else Endpoints.from_env()
    if url is None:
        return base
    return dataclasses.replace(base, s3_bucket=bucket_from_url(url))


def stream_types(endpoints: Endpoints) -> list[str]:
    """The stream types (``joint_state.v1`` …) that have shards in the bucket."""
    fs = s3_filesystem(endpoints)
    selector = pafs.FileSelector(f"{endpoints.s3_bucket}/{SHARDS_PREFIX}", allow_not_found=True)
    return sorted(
        info.base_name for info in fs.get_file_info(selector) if info.type.name == "Directory"
    )


def shards(endpoints: Endpoints, stream_type: str) -> ds.Dataset:
    """All shards of one stream type, with the hive ``date`` partition as a column."""
    return ds.dataset(
        f"{endpoints.s3_bucket}/{SHARDS_PREFIX}/{stream_type}",
        filesystem=s3_filesystem(endpoints),
        format="parquet",
        partitioning="hive",
    )


def episodes_index(endpoints: Endpoints) -> ds.Dataset:
    """The episodes index (rows may repeat per episode; the newest ``indexed_at`` wins).

    Read with the contract's schema, not one inferred from a file: pyarrow would take the first
    file's, and index files written before a column was added (``organisation``) lack it, so a
    bucket holding both would lose the column or fail depending on which file sorts first. With
    the contract's schema a missing column reads as nulls.
    """
    return open_index(f"{endpoints.s3_bucket}/{INDEX_PREFIX}", s3_filesystem(endpoints))


def open_index(path: str, filesystem: pafs.FileSystem) -> ds.Dataset:
    """The index files under ``path`` as one dataset of the contract's schema (see above)."""
    return ds.dataset(
        path,
        filesystem=filesystem,
        format="parquet",
        partitioning="hive",
        schema=index_description().schema,
    )


def has_index(endpoints: Endpoints) -> bool:
    """Whether the bucket holds any index file (pyarrow cannot open a dataset of nothing)."""
    fs = s3_filesystem(endpoints)
    selector = pafs.FileSelector(
        f"{endpoints.s3_bucket}/{INDEX_PREFIX}", allow_not_found=True, recursive=True
    )
    return any(info.type == pafs.FileType.File for info in fs.get_file_info(selector))


def read_shard_rows(
    endpoints: Endpoints,
    keys: Sequence[str],
    *,
    episode_id: str,
    stream: str | None = None,
    columns: Sequence[str] | None = None,
    filesystem: pafs.FileSystem | None = None,
) -> list[pa.Table]:
    """The rows of one episode (optionally one stream) in the shard files ``keys``, per file.

    Only the named files are opened, and inside them only the row groups whose ``episode_id``
    statistics can hold the episode (shards are sorted by episode), so reading one episode
    fetches that episode's bytes and the files' footers, not the dataset. One table per file,
    in key order, so callers can drop a chunk stored twice by keeping its first file.
    """
    fs = filesystem if filesystem is not None else s3_filesystem(endpoints)
    condition = pc.field("episode_id") == episode_id
    if stream is not None:
        condition = condition & (pc.field("stream") == stream)
    tables = []
    for key in sorted(keys):
        fragment = ds.dataset(f"{endpoints.s3_bucket}/{key}", filesystem=fs, format="parquet")
        table = fragment.to_table(
            columns=list(columns) if columns is not None else None, filter=condition
        )
        log.debug("read %d rows of episode %s from %s", table.num_rows, episode_id, key)
        tables.append(table)
    return tables
