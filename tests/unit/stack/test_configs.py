from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from robolake.episode.topics import CHUNK_TOPIC, MAX_RECORD_BYTES
from robolake.provision import robolake_topics
from robolake.stack import kafka, prometheus


def test_kafka_config_is_kraft_combined_on_loopback(tmp_path: Path) -> None:
    path = kafka.write_config(tmp_path, port=1234, controller_port=1235)
    props = dict(line.split("=", 1) for line in path.read_text().splitlines())
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:1235"
    assert props["listeners"].startswith("PLAINTEXT://127.0.0.1:1234,")
    assert int(props["message.max.bytes"]) >= MAX_RECORD_BYTES
    assert (tmp_path / "log4j2.properties").is_file()


def test_topics_fit_a_maximal_chunk() -> None:
    specs = {spec.name: spec for spec in robolake_topics()}
    assert int(specs[CHUNK_TOPIC].config["max.message.bytes"]) == MAX_RECORD_BYTES


def test_prometheus_config_scrapes_itself_minio_and_robolake(tmp_path: Path) -> None:
    path = prometheus.write_config(tmp_path, minio_port=9000, port=9090)
    config = json.loads(path.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"prometheus", "minio", "robolake"}
    assert jobs["minio"]["static_configs"][0]["targets"] == ["127.0.0.1:9000"]
    assert prometheus.targets_dir(tmp_path).is_dir()


def test_format_passes_cluster_ids_that_look_like_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster id may start with '-'; it must be glued to its option or argparse rejects it."""
    seen: list[list[str]] = []

    def fake_run(command: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        seen.append(command)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(kafka, "_new_cluster_id", lambda: "-abc_DEF123")
    monkeypatch.setattr(kafka.subprocess, "run", fake_run)
    properties = kafka.write_config(tmp_path, port=1, controller_port=2)
    kafka.format_storage(tmp_path, properties)
    assert "--cluster-id=-abc_DEF123" in seen[0]
    assert "-abc_DEF123" not in seen[0]
