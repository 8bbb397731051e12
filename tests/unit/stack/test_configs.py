from __future__ import annotations

import json
import subprocess
from pathlib import Path
from xml.etree import ElementTree

import pytest

from robolake.episode.topics import CHUNK_TOPIC, MAX_RECORD_BYTES
from robolake.provision import robolake_topics
from robolake.stack import catalog, kafka, prometheus
from robolake.stack.paths import deploy_dir


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


def _catalog_properties(env: dict[str, str]) -> dict[str, str]:
    """What RESTCatalogServer makes of its environment (RCKUtils.environmentCatalogConfig):
    ``CATALOG_`` dropped, ``__`` read as ``-``, ``_`` as ``.``, lower case."""
    return {
        name.removeprefix("CATALOG_").replace("__", "-").replace("_", ".").lower(): value
        for name, value in env.items()
        if name.startswith("CATALOG_")
    }


def test_catalog_keeps_its_tables_in_a_sqlite_file_and_its_secret_out_of_the_properties(
    tmp_path: Path,
) -> None:
    env = catalog.server_env(
        tmp_path / "catalog", port=8181, s3_endpoint="http://127.0.0.1:9000",
        s3_access_key="robolake", s3_secret_key="the-secret", s3_region="eu-west-1",
        bucket="robolake",
    )  # fmt: skip
    props = _catalog_properties(env)
    assert props["uri"] == f"jdbc:sqlite:{tmp_path / 'catalog' / 'catalog.db'}"
    assert props["rest.port"] == "8181"
    assert props["warehouse"] == "s3://robolake/warehouse"
    assert props["io-impl"] == "org.apache.iceberg.aws.s3.S3FileIO"
    assert props["s3.endpoint"] == "http://127.0.0.1:9000"
    assert props["s3.path-style-access"] == "true"
    assert props["client.region"] == "eu-west-1"
    assert props["catalog.name"] == catalog.CATALOG_NAME
    # The server logs (and may vend) its catalog properties; the keys travel only as AWS_*.
    assert "the-secret" not in props.values()
    assert env["AWS_SECRET_ACCESS_KEY"] == "the-secret"
    assert all(name.startswith(catalog.SCRUBBED_ENV_PREFIXES) for name in env)
    assert (tmp_path / "catalog" / "tmp").is_dir()


def test_catalog_command_binds_loopback_and_silences_the_properties_logger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROBOLAKE_CACHE_DIR", str(tmp_path / "cache"))
    command = catalog.server_command(tmp_path)
    assert command[-1] == catalog.MAIN_CLASS
    assert f"-D{catalog.HOST_PROPERTY}=127.0.0.1" in command
    assert f"-Dorg.slf4j.simpleLogger.log.{catalog.UPSTREAM_MAIN_CLASS}=warn" in command
    classpath = command[command.index("-cp") + 1].split(":")
    assert classpath == [str(catalog.launcher_dir()), str(catalog.lib_dir() / "*")]


def test_catalog_launcher_and_pom_pin_the_version_the_code_names() -> None:
    pom = ElementTree.parse(deploy_dir() / "local" / "iceberg-rest" / "pom.xml").getroot()
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    assert pom.findtext("m:properties/m:iceberg.version", namespaces=ns) == catalog.ICEBERG_VERSION
    source = catalog._launcher_source().read_text()
    assert f'"{catalog.HOST_PROPERTY}"' in source
    assert "package org.apache.iceberg.rest;" in source
