"""Open the shards and the episodes index of a bucket as pyarrow datasets."""

from __future__ import annotations

from typing import Final

import pyarrow.dataset as ds
import pyarrow.fs as pafs

from robolake.endpoints import Endpoints

SHARDS_PREFIX: Final = "shards"
INDEX_PREFIX: Final = "index/episodes"


def s3_filesystem(endpoints: Endpoints) -> pafs.S3FileSystem:
    """pyarrow's S3 filesystem for the endpoints (path-style addressing, as MinIO wants)."""
    return pafs.S3FileSystem(
        access_key=endpoints.s3_access_key,
        secret_key=endpoints.s3_secret_key,
        endpoint_override=endpoints.s3_host,
        scheme="https" if endpoints.s3_secure else "http",
        region=endpoints.s3_region,
        force_virtual_addressing=False,
    )


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
    """The episodes index (rows may repeat per episode; the newest ``indexed_at`` wins)."""
    return ds.dataset(
        f"{endpoints.s3_bucket}/{INDEX_PREFIX}",
        filesystem=s3_filesystem(endpoints),
        format="parquet",
        partitioning="hive",
    )
