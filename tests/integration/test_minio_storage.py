"""Objects put and got through the real MinIO, including a multipart upload."""

from __future__ import annotations

import hashlib
import io
import os

from minio import Minio


def test_put_and_get_object(s3_client: Minio, s3_bucket: str) -> None:
    data = b"episode bytes " * 1000
    s3_client.put_object(s3_bucket, "shards/a.parquet", io.BytesIO(data), len(data))
    response = s3_client.get_object(s3_bucket, "shards/a.parquet")
    try:
        assert response.read() == data
    finally:
        response.close()
        response.release_conn()
    listed = [o.object_name for o in s3_client.list_objects(s3_bucket, prefix="shards/")]
    assert listed == ["shards/a.parquet"]


def test_multipart_upload_of_a_shard_sized_object(s3_client: Minio, s3_bucket: str) -> None:
    data = os.urandom(12 * 1024 * 1024)
    s3_client.put_object(
        s3_bucket, "big.bin", io.BytesIO(data), length=-1, part_size=5 * 1024 * 1024
    )
    stat = s3_client.stat_object(s3_bucket, "big.bin")
    assert stat.size == len(data)
    assert stat.etag is not None
    assert stat.etag.endswith("-3")
    response = s3_client.get_object(s3_bucket, "big.bin")
    try:
        assert hashlib.sha256(response.read()).digest() == hashlib.sha256(data).digest()
    finally:
        response.close()
        response.release_conn()
