"""``robolake upload episode.hdf5`` through the real stack: the ACT episode lands as one
episode with the right stream types, row counts and values; a renamed copy uploaded again from
a fresh spool is the same episode, stored once; a robomimic file lands one episode per demo.

capture CLI (subprocess) -> collector process -> Kafka -> writer process -> Iceberg on MinIO.
The harness (Pipeline, the index wait, the writer's record counts) is the bag test's.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pipeline_harness import Pipeline
from test_bag_upload import FLAGS, _indexed, _writer_records

from fixtures.arm_bag import converted_rows
from fixtures.hdf5_files import (
    ACT,
    ACT_EXPECTED,
    FIELDS,
    ROBOMIMIC,
    ROBOMIMIC_EXPECTED,
    STARTED_AT,
)
from robolake.dataset.audit import audit_chunks
from robolake.dataset.episodes import read_index
from robolake.dataset.reader import RobolakeDataset
from robolake.devices.registry import DeviceRegistry
from robolake.endpoints import Endpoints
from robolake.recordings import prepare_hdf5


def _upload(path: Path, url: str, token: str, spool: Path, log: Path) -> list[dict[str, Any]]:
    """The CLI's report lines, one per episode."""
    command = [sys.executable, "-m", "robolake", "upload", str(path), "--collector", url,
               "--spool", str(spool), "--max-chunk-bytes", str(48 * 1024),
               "--started-at", STARTED_AT]  # fmt: skip
    for key, flag in FLAGS.items():
        command += [flag, FIELDS[key]]
    env = {**os.environ, "ROBOLAKE_DEVICE_TOKEN": token}
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    log.write_text(done.stdout + done.stderr)
    assert done.returncode == 0, done.stdout + done.stderr
    reports = [json.loads(line) for line in done.stdout.strip().splitlines()]
    for report in reports:
        assert report["completed"], report
        assert not report["rejected"], report
    return reports


async def test_an_act_file_lands_once_and_a_robomimic_file_lands_a_demo_per_episode(
    stack_endpoints: Endpoints, kafka_topic: str, s3_bucket: str, tmp_path: Path
) -> None:
    token = DeviceRegistry(tmp_path / "devices.json").add("aloha-2", "lab-3", "org-1")
    local = prepare_hdf5(ACT, fields=FIELDS, started_at=STARTED_AT)[0]
    converted = converted_rows(local)
    async with Pipeline(stack_endpoints, kafka_topic, s3_bucket, tmp_path) as pipeline:
        url = pipeline.collector_url
        (first,) = await asyncio.to_thread(
            _upload, ACT, url, token, tmp_path / "spool-1", tmp_path / "upload-1.log"
        )
        episode_id = first["episode_id"]
        assert episode_id == local.episode_id
        await _indexed(pipeline.dataset_endpoints, episode_id)
        before = _writer_records(pipeline.writer_port)

        renamed = tmp_path / "aloha-2_episode_7.h5"
        shutil.copyfile(ACT, renamed)
        (second,) = await asyncio.to_thread(
            _upload, renamed, url, token, tmp_path / "spool-2", tmp_path / "upload-2.log"
        )
        assert second["episode_id"] == episode_id
        assert second["chunks"] == first["chunks"]
        deadline = time.monotonic() + 120
        wanted = before.get("duplicate", 0.0) + second["chunks"]
        while (after := _writer_records(pipeline.writer_port)).get("duplicate", 0.0) < wanted:
            assert time.monotonic() < deadline, (before, after)
            await asyncio.sleep(1)
        assert after.get("stored", 0.0) == before.get("stored", 0.0), (before, after)

        demos = await asyncio.to_thread(
            _upload, ROBOMIMIC, url, token, tmp_path / "spool-3", tmp_path / "upload-3.log"
        )
        assert [d["recording"]["group"] for d in demos] == ["/data/demo_0", "/data/demo_1"]
        for demo in demos:
            await _indexed(pipeline.dataset_endpoints, demo["episode_id"])

        dataset = RobolakeDataset(pipeline.dataset_endpoints)
        info = dataset.episode(episode_id)
        assert info.complete
        assert (info.device_id, info.task) == ("aloha-2", "transfer the cube")
        assert {s.name: (s.type, s.rows) for s in info.streams} == ACT_EXPECTED
        episode = dataset.read_episode(info)
        for name, table in episode.items():
            expected = converted[name]
            assert table.column("t_ns").to_pylist() == expected.column("t_ns").to_pylist(), name
            assert table.select(expected.schema.names).to_pylist() == expected.to_pylist(), name
        rows = {}
        for demo in demos:
            streams = dataset.episode(demo["episode_id"]).streams
            rows[demo["episode_id"]] = {s.name: (s.type, s.rows) for s in streams}
        assert rows[demos[0]["episode_id"]] == ROBOMIMIC_EXPECTED
        demo_1 = {name: (kind, 20) for name, (kind, _) in ROBOMIMIC_EXPECTED.items()}
        assert rows[demos[1]["episode_id"]] == demo_1
        keys = [
            (e, s.name, q)
            for e in [episode_id] + [d["episode_id"] for d in demos]
            for s in dataset.episode(e).streams
            for q in range(s.chunks)
        ]
        audit = await asyncio.to_thread(audit_chunks, pipeline.dataset_endpoints, keys)
        index = await asyncio.to_thread(read_index, pipeline.dataset_endpoints)
    print(
        f"hdf5 upload: act episode={episode_id} chunks={first['chunks']} "
        f"rows={ {s.name: s.rows for s in info.streams} } robomimic episodes={len(demos)} "
        f"found={audit.found}/{audit.acknowledged} duplicated_rows={audit.duplicated_rows} "
        f"second_upload_duplicates={second['chunks']}"
    )
    assert audit.missing == 0
    assert audit.duplicated_rows == 0
    assert index["episode_id"].to_pylist().count(episode_id) == 1
