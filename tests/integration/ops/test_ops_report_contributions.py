"""``robolake report contributions`` on a simulated run equals the episodes index exactly.

The expected numbers are computed independently of robolake.ops: DuckDB over the raw index files
(newest ``indexed_at`` per episode, with the organisation the collector stamped at upload) and
the shard objects' sizes from a plain S3 listing for bytes. The report is made without the
device registry, which only index rows from before the ``organisation`` column would need; that
the simulator's registry agrees is checked on the side.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from isolation import isolated
from minio import Minio
from ops_harness import ops_run

from robolake.dataset import storage
from robolake.endpoints import Endpoints
from robolake.ops import attribution
from robolake.ops.exporter import Exporter, ExporterSettings


def _s3(endpoints: Endpoints) -> pafs.S3FileSystem:
    return pafs.S3FileSystem(
        access_key=endpoints.s3_access_key, secret_key=endpoints.s3_secret_key,
        endpoint_override=endpoints.s3_host, scheme="http", region=endpoints.s3_region,
    )  # fmt: skip


def _raw_index(endpoints: Endpoints) -> pa.Table:
    """Every index row as stored (the tables' files, or the bucket layout's), not deduplicated."""
    if not storage.has_index(endpoints):
        raise FileNotFoundError("no index yet")
    return storage.episodes_index(endpoints).to_table(
        columns=["episode_id", "capture_point_id", "device_id", "started_at", "ended_at",
                 "complete", "quality_flags", "indexed_at", "organisation"]
    )  # fmt: skip


async def _wait_indexed(endpoints: Endpoints, episodes: int) -> pa.Table:
    deadline = time.monotonic() + 60
    while True:
        try:
            index = await asyncio.to_thread(_raw_index, endpoints)
        except (OSError, FileNotFoundError):
            index = pa.table({"episode_id": pa.array([], pa.string())})
        if len(set(index["episode_id"].to_pylist())) >= episodes or time.monotonic() > deadline:
            return index
        await asyncio.sleep(1.0)


def _report(endpoints: Endpoints, devices: Path, out: Path, *args: str) -> None:
    env = {**os.environ, **endpoints.to_env(), "ROBOLAKE_DEVICES_FILE": str(devices)}
    result = subprocess.run(
        [sys.executable, "-m", "robolake", "report", "contributions", *args, "--output", str(out)],
        env=env, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


async def test_contribution_report_matches_the_index_exactly(
    stack_endpoints: Endpoints,
    kafka_topic: str,
    s3_bucket: str,
    s3_client: Minio,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with ops_run(
        stack_endpoints, kafka_topic, s3_bucket, tmp_path,
        targets=None, capture_points=9, duration_s=5.0,
    ) as run:  # fmt: skip
        endpoints = isolated(stack_endpoints, s3_bucket)
        episodes = run.result.episodes_completed
        index = await _wait_indexed(endpoints, episodes)
        devices_file = run.pipeline.devices_file
        no_registry = tmp_path / "no-registry.json"
        today = dt.datetime.now(dt.UTC).date()
        since = (today - dt.timedelta(days=1)).isoformat()
        _report(endpoints, no_registry, tmp_path / "report.csv", "--since", since)
        _report(endpoints, devices_file, tmp_path / "report.parquet", "--since", since,
                "--format", "parquet")  # fmt: skip
        _report(endpoints, devices_file, tmp_path / "later.csv", "--since",
                (today + dt.timedelta(days=2)).isoformat())  # fmt: skip

    report = pacsv.read_csv(tmp_path / "report.csv").to_pylist()
    as_parquet = pq.read_table(tmp_path / "report.parquet")
    assert as_parquet.schema.metadata[b"since"].decode() == since
    assert as_parquet.num_rows == len(report)
    assert pacsv.read_csv(tmp_path / "later.csv").num_rows == 0  # nothing recorded in the future

    lines = [json.loads(line) for line in devices_file.read_text().splitlines()[1:]]
    registry = [line["device"] for line in lines if line["op"] == "add"]  # the journal's enrolments
    newest_enrolment: dict[str, tuple[float, str]] = {}
    for device in registry:
        seen = newest_enrolment.get(device["device_id"])
        if seen is None or device["created_at"] >= seen[0]:
            newest_enrolment[device["device_id"]] = (device["created_at"], device["organisation"])
    orgs = pa.table(
        {
            "device_id": list(newest_enrolment),
            "organisation": [org for _, org in newest_enrolment.values()],
        }
    )
    con = duckdb.connect()
    con.register("idx", index)
    con.register("orgs", orgs)
    # Every row is stamped, and with the organisation its device was enrolled with.
    assert index["organisation"].null_count == 0
    assert con.sql(
        "select count(*) from idx i join orgs o using (device_id) "
        "where i.organisation is distinct from o.organisation"
    ).fetchall() == [(0,)]
    expected = con.sql(
        """
        with newest as (
            select * from idx
            qualify row_number() over (partition by episode_id order by indexed_at desc) = 1
        )
        select n.organisation, n.capture_point_id,
               count(*) as episodes,
               sum(n.complete::int) as complete_episodes,
               sum((len(n.quality_flags) > 0)::int) as flagged_episodes,
               sum(epoch_ns(n.ended_at) - epoch_ns(n.started_at)) as recorded_ns
        from newest n
        group by all order by 1, 2
        """
    ).fetchall()
    got = [
        (r["organisation"], r["capture_point_id"], r["episodes"], r["complete_episodes"],
         r["flagged_episodes"])
        for r in report
    ]  # fmt: skip
    assert got == [row[:5] for row in expected]
    for row, want in zip(report, expected, strict=True):
        assert row["hours"] == pytest.approx(want[5] / 3.6e12, rel=1e-12)
        assert row["share_complete"] == pytest.approx(want[3] / want[2])
        assert row["share_flagged"] == pytest.approx(want[4] / want[2])
    assert sum(r["episodes"] for r in report) == episodes
    assert {r["organisation"] for r in report} <= {f"sim-org-{i:02d}" for i in range(3)}

    # Every shard byte is attributed to exactly one episode: the report's bytes add up to the
    # shard objects' sizes as S3 lists them.
    if storage.uses_tables(endpoints):  # the data files of the tables' current snapshots
        shard_bytes = sum(f.size for f in storage.data_files(endpoints))
    else:
        shard_bytes = sum(
            int(o.size or 0)
            for o in s3_client.list_objects(s3_bucket, prefix="shards/", recursive=True)
        )
    assert shard_bytes > 0
    assert sum(r["bytes"] for r in report) == shard_bytes

    if storage.uses_tables(endpoints):
        # The exporter's first scan counts the same bytes from the index rows' stored_bytes
        # and the snapshots' summaries: it reads no data file (O(1) in the number of files).
        def no_file_reads(*args: object) -> dict[str, int]:
            raise AssertionError(f"the exporter read a data file: {args[2:]}")

        monkeypatch.setattr(attribution, "episode_rows", no_file_reads)
        inventory = Exporter(ExporterSettings(), endpoints).scan_once()
        assert inventory.episodes["stored_bytes"].null_count == 0
        assert sum(inventory.episodes["bytes"].to_pylist()) == shard_bytes
        assert inventory.unindexed_bytes == 0
        assert inventory.shard_files == len(storage.data_files(endpoints))
    print(
        f"contributions: {len(report)} capture points, {episodes} episodes, "
        f"{sum(r['hours'] for r in report):.4f} h, {shard_bytes} bytes"
    )
