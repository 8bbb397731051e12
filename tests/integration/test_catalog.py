"""The stack's Iceberg REST catalog, driven the way the services will drive it: pyiceberg's REST
catalog configuration, a day-partitioned table on MinIO, and a restart that keeps every table."""

from __future__ import annotations

import datetime as dt
import socket
import time
import urllib.error
import uuid
from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform
from pyiceberg.types import DoubleType, LongType, NestedField, StringType, TimestamptzType

from robolake.endpoints import Endpoints
from robolake.stack import catalog as catalog_component
from robolake.stack.process import ProcessRecord, is_running
from robolake.stack.stack import Stack

SCHEMA = Schema(
    NestedField(1, "episode_id", StringType(), required=False),
    NestedField(2, "t", TimestamptzType(), required=False),
    NestedField(3, "seq", LongType(), required=False),
    NestedField(4, "value", DoubleType(), required=False),
)
SPEC = PartitionSpec(
    PartitionField(source_id=2, field_id=1000, transform=DayTransform(), name="t_day")
)


def _rows() -> pa.Table:
    """Six rows over two days, so the table has two partitions."""
    day = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    times = [day + dt.timedelta(hours=h) for h in (0, 1, 2, 24, 25, 26)]
    return pa.table(
        {
            "episode_id": pa.array(["ep-a"] * 3 + ["ep-b"] * 3, pa.string()),
            "t": pa.array(times, pa.timestamp("us", tz="UTC")),
            "seq": pa.array(range(6), pa.int64()),
            "value": pa.array([0.5 * i for i in range(6)], pa.float64()),
        }
    )


def _connect(endpoints: Endpoints) -> Catalog:
    return load_catalog("robolake-test", **endpoints.catalog_properties())


def _listen_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on ``port``, from /proc/net/tcp{,6}."""
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if fields[3] != "0A" or int(port_hex, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            # The kernel prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(socket.inet_ntop(family, raw))
    return found


def test_day_partitioned_table_survives_a_catalog_restart(
    local_stack: Stack, stack_endpoints: Endpoints
) -> None:
    endpoints = local_stack.endpoints()
    assert endpoints.catalog_uri, "the stack exports no catalog URI"
    namespace = f"test_{uuid.uuid4().hex[:12]}"
    identifier = f"{namespace}.samples"

    catalog = _connect(endpoints)
    catalog.create_namespace(namespace)
    table = catalog.create_table(identifier, schema=SCHEMA, partition_spec=SPEC)
    assert table.location().startswith(
        catalog_component.warehouse(endpoints.s3_bucket) + f"/{namespace}/"
    )
    table.append(_rows())
    snapshot = table.current_snapshot()
    assert snapshot is not None
    read = catalog.load_table(identifier).scan().to_arrow().sort_by("seq")
    assert read.equals(_rows())
    partitions = {row["partition"]["t_day"] for row in table.inspect.files().to_pylist()}
    assert len(partitions) == 2

    # Iceberg's server binds 0.0.0.0 by itself; the stack's launcher binds loopback only.
    port = int(endpoints.catalog_uri.rsplit(":", 1)[1])
    assert _listen_addresses(port) <= {"127.0.0.1", "::ffff:127.0.0.1"}, _listen_addresses(port)
    assert _listen_addresses(port)

    component = local_stack._load()["components"]["catalog"]
    before = ProcessRecord.from_json(component)
    assert local_stack.stop_component("catalog")
    assert not is_running(before)
    with pytest.raises(urllib.error.URLError):
        catalog_component.is_ready(endpoints.catalog_uri)
    began = time.monotonic()
    again = local_stack.up()
    print(f"catalog restart (stop + up) took {time.monotonic() - began:.1f} s")
    assert again.catalog_uri == endpoints.catalog_uri  # the same port
    after = ProcessRecord.from_json(local_stack._load()["components"]["catalog"])
    assert after.pid != before.pid

    reopened = _connect(again)
    assert (namespace, "samples") in reopened.list_tables(namespace)
    kept = reopened.load_table(identifier)
    current = kept.current_snapshot()
    assert current is not None
    assert current.snapshot_id == snapshot.snapshot_id
    assert kept.scan().to_arrow().sort_by("seq").equals(_rows())

    # The server logs every catalog property at INFO; the stack keeps the secret out of them.
    log_text = Path(after.log_path).read_text()
    assert "Started" in log_text  # the log is the server's, not empty
    assert endpoints.s3_secret_key not in log_text

    reopened.purge_table(identifier)
    reopened.drop_namespace(namespace)
