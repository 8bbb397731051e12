"""bench/peers.py without Benthos or a stack: the table, its ratios, the accounting that fails a
run, the Benthos configurations, and the Kafka byte count."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robolake.bench.peers import (
    SHARD_BYTES,
    PathFigures,
    PeerBenchError,
    benthos_binary,
    check_audit,
    check_drain_accounting,
    check_http_accounting,
    http_to_kafka_config,
    kafka_log_bytes,
    kafka_to_s3_config,
    render,
    robolake_system,
    table,
)
from robolake.dataset.audit import ChunkAudit
from robolake.endpoints import Endpoints


def _figures(system: str, mb_per_s: float, cpu: float, stored: int) -> PathFigures:
    return PathFigures(
        path="HTTP -> Kafka",
        system=system,
        mb_per_s=mb_per_s,
        offered_bytes=2_000_000_000,
        seconds=30.0,
        cpu_seconds=cpu,
        peak_rss_mib=100.0,
        stored_bytes=stored,
        records_offered=1900,
        records_stored=1900,
        ack_p50_ms=100.0,
        ack_p99_ms=400.0,
    )


def test_table_has_both_systems_and_their_ratios() -> None:
    ours = _figures("robolake", 75.0, 16.0, 2_020_000_000)
    theirs = _figures("Benthos", 250.0, 4.0, 2_010_000_000)
    rows = table([theirs, ours])
    assert [r["system"] for r in rows] == ["robolake", "Benthos", "robolake/Benthos"]
    assert rows[0]["CPU s/GB"] == 8.0
    assert rows[0]["stored/offered"] == 1.01
    ratio = rows[2]
    assert ratio["MB/s"] == 0.3
    assert ratio["CPU s/GB"] == 4.0
    assert ratio["ack p99 ms"] == 1.0
    text = render(rows)
    assert text.splitlines()[0].startswith("| path | system | MB/s |")
    assert "| HTTP -> Kafka | robolake/Benthos | 0.30 |" in text
    assert "| 1.010 |" in text
    assert "1,900" in text
    json.dumps(rows)  # the docs' JSON


def test_each_collector_client_gets_its_row_and_ratio() -> None:
    rows = table(
        [
            _figures("robolake", 90.0, 10.0, 2_000_000_000),
            _figures(robolake_system("aiokafka", ("librdkafka", "aiokafka")), 60.0, 16.0, 1),
            _figures("Benthos", 150.0, 4.0, 2_000_000_000),
        ]
    )
    assert [r["system"] for r in rows] == [
        "robolake",
        "robolake (aiokafka)",
        "Benthos",
        "robolake/Benthos",
        "robolake (aiokafka)/Benthos",
    ]
    assert rows[3]["CPU s/GB"] == 2.5
    assert rows[4]["CPU s/GB"] == 4.0
    assert robolake_system("librdkafka", ("librdkafka", "aiokafka")) == "robolake"


def test_a_drain_has_no_latency_and_no_ratio_without_a_peer() -> None:
    drain = _figures("robolake", 60.0, 20.0, 2_000_000_000)
    drain.path, drain.ack_p50_ms, drain.ack_p99_ms = "Kafka -> S3", None, None
    rows = table([drain])
    assert len(rows) == 1
    assert rows[0]["ack p99 ms"] is None
    assert "|  |" in render(rows)


def test_http_accounting_fails_on_a_lost_or_an_unasked_record() -> None:
    check_http_accounting("x", acknowledged=100, refused=0, stored=164, overhead=64)
    check_http_accounting("x", acknowledged=100, refused=2, stored=101)  # one answered late
    with pytest.raises(PeerBenchError, match="1 lost"):
        check_http_accounting("x", acknowledged=100, refused=0, stored=163, overhead=64)
    with pytest.raises(PeerBenchError, match="refused"):
        check_http_accounting("x", acknowledged=100, refused=0, stored=101)


def test_drain_accounting_wants_every_record_and_byte_once() -> None:
    check_drain_accounting("x", offered=10, stored=10, offered_bytes=99, stored_bytes=99)
    with pytest.raises(PeerBenchError, match="9 records"):
        check_drain_accounting("x", offered=10, stored=9, offered_bytes=99, stored_bytes=90)
    with pytest.raises(PeerBenchError):
        check_drain_accounting("x", offered=10, stored=10, offered_bytes=99, stored_bytes=98)


def test_audit_must_be_exact() -> None:
    exact = ChunkAudit(
        acknowledged=5, found=5, missing=0, duplicated_rows=0, shard_files=1, shard_bytes=1
    )
    check_audit(exact, 5)
    with pytest.raises(PeerBenchError, match="1 missing"):
        check_audit(ChunkAudit(5, 4, 1, 0, 1, 1), 5)
    with pytest.raises(PeerBenchError, match="2 rows stored twice"):
        check_audit(ChunkAudit(5, 5, 0, 2, 1, 1), 5)


def test_benthos_configurations_stay_on_loopback() -> None:
    http = http_to_kafka_config(port=1, metrics_port=2, bootstrap="127.0.0.1:9", topic="t")
    assert http["input"]["http_server"]["address"] == "127.0.0.1:1"
    assert http["http"]["address"] == "127.0.0.1:2"
    assert http["output"]["kafka_franz"]["compression"] == "none"
    endpoints = Endpoints(
        kafka_bootstrap="127.0.0.1:9",
        s3_endpoint="http://127.0.0.1:3",
        s3_access_key="a",
        s3_secret_key="s",
        s3_bucket="b",
    )
    s3 = kafka_to_s3_config(
        metrics_port=2, bootstrap="127.0.0.1:9", topic="t", group="g", endpoints=endpoints
    )
    out = s3["output"]["aws_s3"]
    assert (out["bucket"], out["endpoint"], out["force_path_style_urls"]) == (
        "b",
        "http://127.0.0.1:3",
        True,
    )
    assert out["batching"]["byte_size"] == SHARD_BYTES
    assert out["batching"]["processors"] == [{"archive": {"format": "tar"}}]
    assert s3["input"]["kafka_franz"]["consumer_group"] == "g"


def test_benthos_is_cached_under_its_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROBOLAKE_CACHE_DIR", str(tmp_path))
    assert benthos_binary() == tmp_path / "benthos" / "v4.27.0" / "benthos"


def test_kafka_log_bytes_counts_only_the_topics_segments(tmp_path: Path) -> None:
    for directory, files in {
        "t-0": {"00.log": 10, "00.index": 1000},
        "t-1": {"00.log": 5, "07.log": 3},
        "other-0": {"00.log": 100},
    }.items():
        (tmp_path / directory).mkdir()
        for name, size in files.items():
            (tmp_path / directory / name).write_bytes(b"x" * size)
    assert kafka_log_bytes(tmp_path, "t") == 18
