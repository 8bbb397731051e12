"""``robolake upload arm.mcap`` through the real stack: the ROS 2 bag lands as one episode with
the right stream types, row counts and values; the same bag uploaded again under another name
(a rig's uploader retrying a whole file after a restart) is the same episode, stored once.

capture CLI (subprocess) -> collector process -> Kafka -> writer process -> Iceberg on MinIO.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow as pa
from pipeline_harness import Pipeline

from fixtures.arm_bag import ARM_BAG as BAG
from fixtures.arm_bag import EXPECTED, FIELDS
from robolake.capture.spool import Spool
from robolake.dataset.audit import audit_chunks
from robolake.dataset.episodes import read_index
from robolake.dataset.reader import RobolakeDataset
from robolake.devices.registry import DeviceRegistry
from robolake.endpoints import Endpoints
from robolake.recordings import prepare

FLAGS = {
    "device_id": "--device-id",
    "capture_point_id": "--capture-point",
    "robot_type": "--robot-type",
    "scene": "--scene",
    "task": "--task",
    "operator": "--operator",
}


def _upload(bag: Path, url: str, token: str, spool: Path, log: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "robolake", "upload", str(bag), "--collector", url,
               "--spool", str(spool), "--max-chunk-bytes", str(48 * 1024)]  # fmt: skip
    for key, flag in FLAGS.items():
        command += [flag, FIELDS[key]]
    env = {**os.environ, "ROBOLAKE_DEVICE_TOKEN": token}
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    log.write_text(done.stdout + done.stderr)
    assert done.returncode == 0, done.stdout + done.stderr
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["completed"], summary
    assert not summary["rejected"], summary
    assert "not uploaded: /battery (sensor_msgs/msg/BatteryState, 3 messages)" in done.stderr
    return summary


def _writer_records(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.findall(r'^robolake_writer_records_total\{outcome="(\w+)"\} (\S+)$', text, re.M)
    return {outcome: float(value) for outcome, value in found}


async def _indexed(endpoints: Endpoints, episode_id: str, timeout: float = 120) -> pa.Table:
    deadline = time.monotonic() + timeout
    while True:
        index = await asyncio.to_thread(read_index, endpoints)
        rows = index.filter(pa.compute.equal(index["episode_id"], episode_id))
        if rows.num_rows and rows["complete"][0].as_py():
            return rows
        assert time.monotonic() < deadline, f"episode {episode_id} not indexed as complete"
        await asyncio.sleep(1)


async def test_a_ros2_bag_lands_as_one_episode_and_a_renamed_copy_is_stored_once(
    stack_endpoints: Endpoints, kafka_topic: str, s3_bucket: str, tmp_path: Path
) -> None:
    token = DeviceRegistry(tmp_path / "devices.json").add("rig-7", "lab-3", "org-1")
    local = prepare(BAG, fields=FIELDS)  # the same conversion, on this side, to compare with
    converted: dict[str, list[pa.Table]] = {}
    for stream, table in local.batches():
        converted.setdefault(stream, []).append(table)
    async with Pipeline(stack_endpoints, kafka_topic, s3_bucket, tmp_path) as pipeline:
        url = pipeline.collector_url
        first = await asyncio.to_thread(
            _upload, BAG, url, token, tmp_path / "spool-1", tmp_path / "upload-1.log"
        )
        episode_id = first["episode_id"]
        await _indexed(pipeline.dataset_endpoints, episode_id)
        before = _writer_records(pipeline.writer_port)

        # The rig's uploader again, after a restart (a new spool) and under another name.
        renamed = tmp_path / "rig-7_2026-03-01_take-1.mcap"
        shutil.copyfile(BAG, renamed)
        second = await asyncio.to_thread(
            _upload, renamed, url, token, tmp_path / "spool-2", tmp_path / "upload-2.log"
        )
        assert second["episode_id"] == episode_id
        assert second["chunks"] == first["chunks"]  # the same chunks, byte for byte
        deadline = time.monotonic() + 120
        wanted = before.get("duplicate", 0.0) + second["chunks"]
        while (after := _writer_records(pipeline.writer_port)).get("duplicate", 0.0) < wanted:
            assert time.monotonic() < deadline, (before, after)
            await asyncio.sleep(1)
        assert after.get("stored", 0.0) == before.get("stored", 0.0), (before, after)

        dataset = RobolakeDataset(pipeline.dataset_endpoints)
        info = dataset.episode(episode_id)
        assert info.complete
        assert (info.device_id, info.scene, info.task) == ("rig-7", "lab", "pick up the red cup")
        assert {s.name: (s.type, s.rows) for s in info.streams} == EXPECTED
        episode = dataset.read_episode(info)
        assert {name: t.num_rows for name, t in episode.items()} == {
            name: rows for name, (_, rows) in EXPECTED.items()
        }
        for name, table in episode.items():
            expected = pa.concat_tables(converted[name])
            assert table.column("t_ns").to_pylist() == expected.column("t_ns").to_pylist(), name
            assert table.select(expected.schema.names).to_pylist() == expected.to_pylist(), name
        manifest = dataset.manifest(info)
        joints = manifest.stream("joint_states").elements
        assert joints is not None
        assert list(joints)[:2] == ["shoulder_pan", "shoulder_lift"]
        audit = await asyncio.to_thread(
            audit_chunks,
            pipeline.dataset_endpoints,
            [(episode_id, s.name, q) for s in info.streams for q in range(s.chunks)],
        )
        index = await asyncio.to_thread(read_index, pipeline.dataset_endpoints)
    print(
        f"bag upload: episode={episode_id} chunks={first['chunks']} "
        f"rows={ {s.name: s.rows for s in info.streams} } found={audit.found}/{audit.acknowledged} "
        f"duplicated_rows={audit.duplicated_rows} second_upload_duplicates={second['chunks']}"
    )
    assert audit.missing == 0
    assert audit.duplicated_rows == 0
    assert index["episode_id"].to_pylist().count(episode_id) == 1


def _accepted(base: str) -> int:
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
        text = response.read().decode()
    match = re.search(r"^robolake_collector_chunks_accepted_total (\S+)$", text, re.M)
    return int(float(match.group(1))) if match else 0


async def test_a_bag_upload_killed_midway_resumes_and_lands_whole(
    stack_endpoints: Endpoints, kafka_topic: str, s3_bucket: str, tmp_path: Path
) -> None:
    """SIGKILL the uploading CLI after some chunks were acknowledged; the same command again
    uploads what the spool holds, continues the bag where the spool stopped, and completes."""
    bag = tmp_path / "take"
    make_bags = BAG.parent / "make_bags.py"
    subprocess.run(
        [sys.executable, str(make_bags), str(bag), "--seconds", "4", "--width", "320",
         "--height", "240"],
        check=True, timeout=120,
    )  # fmt: skip
    expected = {
        name: s["rows"] for name, s in prepare(bag, fields=FIELDS).report()["streams"].items()
    }
    token = DeviceRegistry(tmp_path / "devices.json").add("rig-7", "lab-3", "org-1")
    spool = tmp_path / "spool"
    async with Pipeline(stack_endpoints, kafka_topic, s3_bucket, tmp_path) as pipeline:
        command = [sys.executable, "-m", "robolake", "upload", str(bag),
                   "--collector", pipeline.collector_url, "--spool", str(spool),
                   "--max-chunk-bytes", str(512 * 1024), "--concurrency", "1"]  # fmt: skip
        for key, flag in FLAGS.items():
            command += [flag, FIELDS[key]]
        env = {**os.environ, "ROBOLAKE_DEVICE_TOKEN": token}
        with (tmp_path / "upload-killed.log").open("wb") as log:
            first = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 120
            while await asyncio.to_thread(_accepted, pipeline.collector_url) < 10:
                assert first.poll() is None, (tmp_path / "upload-killed.log").read_text()
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            first.send_signal(signal.SIGKILL)
            first.wait()
        journals = Spool(spool).episodes()
        assert journals, "the upload finished before it was killed; the test proves nothing"
        episode_id = journals[0]
        resumed = await asyncio.to_thread(
            subprocess.run, command, env=env, capture_output=True, text=True, timeout=300,
            check=False,
        )  # fmt: skip
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        summary = json.loads(resumed.stdout.strip().splitlines()[-1])
        assert summary["episode_id"] == episode_id
        assert summary["completed"], summary
        assert "rows already spooled, continuing" in resumed.stderr
        await _indexed(pipeline.dataset_endpoints, episode_id)
        info = RobolakeDataset(pipeline.dataset_endpoints).episode(episode_id)
        audit = await asyncio.to_thread(
            audit_chunks,
            pipeline.dataset_endpoints,
            [(episode_id, s.name, q) for s in info.streams for q in range(s.chunks)],
        )
    print(
        f"bag upload killed and resumed: episode={episode_id} chunks={audit.acknowledged} "
        f"found={audit.found} duplicated_rows={audit.duplicated_rows} rows={expected}"
    )
    assert {s.name: s.rows for s in info.streams} == expected
    assert audit.missing == 0
    assert audit.duplicated_rows == 0
    assert Spool(spool).episodes() == []
