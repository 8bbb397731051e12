"""The sustained run of ``make soak-tables``, short: two minutes of load with a 4 MiB target.

Marked ``chaos`` (``make chaos`` runs it, ``make test`` does not: it takes about three minutes).
The same harness as the one-hour run (``robolake.bench.soak_tables``), with a target small
enough that two minutes make files of several targets, compaction every 15 s on the open
partition while the writer appends, expiry and orphan removal in each cycle. It must end with
every table's average file within 2x of its ideal, nothing lost or duplicated against the
acknowledged chunks, and no orphan older than the retention left in the bucket.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from robolake.bench.soak_tables import SoakSettings, render, soak
from robolake.endpoints import Endpoints

pytestmark = pytest.mark.chaos

MIB = 1024 * 1024


async def test_short_sustained_run_keeps_files_near_the_target(
    stack_endpoints: Endpoints, tmp_path: Path
) -> None:
    settings = SoakSettings(
        seconds=float(os.environ.get("ROBOLAKE_SOAK_TABLES_SECONDS", "120")),
        rate_mb_s=4.0,
        capture_points=50,
        interval_s=15.0,
        target_file_bytes=4 * MIB,
        snapshot_retention_s=30.0,
        orphan_retention_s=60.0,
        sample_s=15.0,
        drain_timeout_s=300.0,
        # Flushes every 10 s instead of every minute: many small files in two minutes.
        writer_args=("--flush-age", "10"),
    )
    report = await soak(stack_endpoints, tmp_path, settings)
    print(render(report))
    assert report.acknowledged > 0
    assert report.lost == 0
    assert report.duplicated_rows == 0
    assert report.compaction.partitions_committed > 0
    assert report.compaction.failures == 0
    big = [t for t in report.tables if t.bytes > settings.target_file_bytes]
    assert big, "no table grew past the target: the run shows nothing about the cut"
    for table in report.tables:
        assert table.within_2x is not False, table
    before = {t.table: t.data_files for t in report.tables_at_load_end}
    assert sum(before.values()) > sum(t.data_files for t in report.tables)
    assert report.storage.orphan_bytes_old == 0, report.storage
