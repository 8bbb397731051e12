"""A second, private stack: up, status, down with no process left, warm restart keeps data."""

from __future__ import annotations

import io
import time
from pathlib import Path

from minio import Minio

from robolake.stack.process import ProcessRecord, is_running
from robolake.stack.stack import COMPONENTS, Stack


def _client(stack: Stack) -> Minio:
    endpoints = stack.endpoints()
    return Minio(
        endpoints.s3_host,
        access_key=endpoints.s3_access_key,
        secret_key=endpoints.s3_secret_key,
        secure=False,
    )


def _records(stack: Stack) -> list[ProcessRecord]:
    components = stack._load()["components"]
    return [ProcessRecord.from_json(components[name]) for name in COMPONENTS]


def test_up_down_leaves_no_process_and_warm_restart_keeps_data_and_ports(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "state", bucket="lifecycle")
    try:
        first = stack.up()
        assert stack.is_up()
        assert [s.name for s in stack.status() if s.running] == list(COMPONENTS)
        _client(stack).put_object("lifecycle", "kept", io.BytesIO(b"kept"), 4)
        records = _records(stack)
        assert all(is_running(r) for r in records)
        # A second `up` while running starts nothing new.
        stack.up()
        assert [r.pid for r in _records(stack)] == [r.pid for r in records]

        assert sorted(stack.down()) == sorted(COMPONENTS)
        assert not any(is_running(r) for r in records)
        assert not stack.is_up()
        assert stack.down() == []  # stopping twice is safe

        began = time.monotonic()
        second = stack.up()
        warm_seconds = time.monotonic() - began
        assert second.kafka_bootstrap == first.kafka_bootstrap
        assert second.s3_endpoint == first.s3_endpoint
        assert first.catalog_uri is not None
        assert second.catalog_uri == first.catalog_uri
        response = _client(stack).get_object("lifecycle", "kept")
        try:
            assert response.read() == b"kept"
        finally:
            response.close()
            response.release_conn()
        print(f"warm restart of the stack took {warm_seconds:.1f} s")
    finally:
        stack.down()
    assert not any(is_running(r) for r in _records(stack))
