"""Where shards go: a narrow object-store interface with one real implementation (MinIO/S3).

The writer needs four operations and nothing else; keeping the interface that small is what lets
unit tests use an in-memory fake while integration tests run the real server. Methods are
blocking (the ``minio`` client is), so the run loop calls them through ``asyncio.to_thread``.
Every failure of the service -- refused connection, timeout, 5xx -- becomes
:class:`~robolake.writer.errors.StorageUnavailable`, the loop's backpressure signal.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Protocol

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from robolake.endpoints import Endpoints
from robolake.writer.errors import StorageUnavailable

log = logging.getLogger(__name__)

#: Smallest part S3 accepts in a multipart upload.
MIN_PART_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True)
class StoredObject:
    """One listed object."""

    key: str
    size: int


class ObjectStore(Protocol):
    """The writer's view of S3: whole-object put/get/delete and prefix listing."""

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` at ``key``, replacing what was there; durable when it returns."""
        ...

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None if there is none."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; no error if it does not exist."""
        ...

    def list(self, prefix: str) -> list[StoredObject]:
        """Every object whose key starts with ``prefix`` (recursively), in key order."""
        ...


class MinioStore:
    """:class:`ObjectStore` on an S3 bucket through the ``minio`` client.

    Short timeouts and few client-side retries: the run loop owns retrying (with backoff and
    paused consumption), so a dead server must surface in seconds rather than minutes.
    Objects larger than ``part_bytes`` are uploaded as S3 multipart uploads.
    """

    def __init__(
        self,
        endpoints: Endpoints,
        bucket: str | None = None,
        *,
        part_bytes: int = 16 * 1024 * 1024,
        connect_timeout: float = 3.0,
        read_timeout: float = 60.0,
    ) -> None:
        self.bucket = bucket or endpoints.s3_bucket
        self._part_bytes = max(part_bytes, MIN_PART_BYTES)
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            retries=urllib3.Retry(
                total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]
            ),
            maxsize=8,
        )
        self._client = Minio(
            endpoints.s3_host,
            access_key=endpoints.s3_access_key,
            secret_key=endpoints.s3_secret_key,
            secure=endpoints.s3_secure,
            region=endpoints.s3_region,
            http_client=http,
        )

    def _unavailable(self, action: str, key: str, exc: Exception) -> StorageUnavailable:
        return StorageUnavailable(
            f"S3 {action} of s3://{self.bucket}/{key} failed: {type(exc).__name__}: {exc}",
            retry_after=1.0,
        )

    def put(self, key: str, data: bytes, content_type: str) -> None:
        try:
            self._client.put_object(
                self.bucket,
                key,
                io.BytesIO(data),
                len(data),
                content_type=content_type,
                part_size=self._part_bytes,
            )
        except (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise self._unavailable("put", key, exc) from exc

    def get(self, key: str) -> bytes | None:
        try:
            response = self._client.get_object(self.bucket, key)
            try:
                return bytes(response.read())
            finally:
                response.close()
                response.release_conn()
        except S3Error as exc:
            if exc.code == "NoSuchKey":
                return None
            raise self._unavailable("get", key, exc) from exc
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._unavailable("get", key, exc) from exc

    def delete(self, key: str) -> None:
        try:
            self._client.remove_object(self.bucket, key)
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._unavailable("delete", key, exc) from exc

    def list(self, prefix: str) -> list[StoredObject]:
        try:
            return [
                StoredObject(str(o.object_name), int(o.size or 0))
                for o in self._client.list_objects(self.bucket, prefix=prefix, recursive=True)
            ]
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._unavailable("list", prefix, exc) from exc
