"""Erasure: ``robolake episodes delete`` removes an episode from every table, audits it, and
after snapshot expiry and orphan removal no stored object holds the episode's id any more."""

from __future__ import annotations

import signal
from pathlib import Path

import pyarrow.compute as pc
from minio import Minio
from writer_harness import (
    Produced,
    assert_exact,
    indexed,
    object_keys,
    produce_episode,
    producer,
    read_object,
    small_episode,
    spawn_writer,
    wait_until,
    writer_settings,
)

from robolake.cli import main
from robolake.dataset import storage
from robolake.endpoints import Endpoints
from robolake.lake import layout
from robolake.lake.catalog import LakeTables
from robolake.lake.maintenance import Maintenance
from robolake.lake.offsets import recorded


async def test_an_erased_episode_leaves_every_table_and_then_storage(
    lake_endpoints: Endpoints,
    kafka_topic: str,
    dlq_topic: str,
    s3_client: Minio,
    tmp_path: Path,
    monkeypatch: object,
) -> None:
    endpoints = lake_endpoints
    bucket = endpoints.s3_bucket
    produced = Produced()
    episodes = [small_episode(seed) for seed in range(800, 803)]
    kafka = producer(endpoints.kafka_bootstrap)
    await kafka.start()
    try:
        for episode in episodes:
            await produce_episode(kafka, kafka_topic, episode, produced)
    finally:
        await kafka.stop()
    writer = spawn_writer(
        tmp_path / "writer.log", endpoints, writer_settings(kafka_topic, dlq_topic, record="tables")
    )
    try:
        await wait_until(
            lambda: len(indexed(s3_client, bucket, tables=endpoints)) == len(episodes),
            timeout=90,
            what="every episode indexed",
        )
        writer.signal(signal.SIGTERM)
        assert writer.wait() == 0, writer.log()[-3000:]
    finally:
        writer.kill()
    tables = LakeTables.from_endpoints(endpoints)
    offsets_before = recorded(tables.load(layout.INDEX_TABLE).metadata, kafka_topic).offsets
    erased = episodes[1].manifest.episode_id
    # The episode's id is in stored objects now: the check below can fail.
    assert any(
        erased.encode() in read_object(s3_client, bucket, k) for k in _lake_keys(s3_client, bucket)
    )

    for name, value in endpoints.to_env().items():
        monkeypatch.setenv(name, value)  # type: ignore[attr-defined]
    code = main(["episodes", "delete", erased, "--reason", "consent withdrawn", "--by", "dpo"])
    assert code == 0

    # Gone from every table, the rest intact, the writer's offsets carried forward.
    remaining = Produced(
        chunks={k: v for k, v in produced.chunks.items() if k[0] != erased},
        tables={k: v for k, v in produced.tables.items() if k[0] != erased},
    )
    assert_exact(s3_client, bucket, remaining, tables=endpoints)
    assert erased not in indexed(s3_client, bucket, tables=endpoints)
    for name in tables.shard_tables():
        rows = tables.load(name).scan(row_filter=f"episode_id == '{erased}'").to_arrow()
        assert rows.num_rows == 0, name
    index = tables.load(layout.INDEX_TABLE)
    assert recorded(index.metadata, kafka_topic).offsets == offsets_before
    audit = tables.load(layout.ERASURES_TABLE).scan().to_arrow()
    assert audit.column("episode_id").to_pylist() == [erased]
    assert audit.column("reason").to_pylist() == ["consent withdrawn"]
    assert audit.column("requested_by").to_pylist() == ["dpo"]
    assert pc.sum(audit.column("rows_removed")).as_py() > 0
    # Readers see the erasure at once.
    assert erased not in set(storage.episodes_index(endpoints).to_table()["episode_id"].to_pylist())

    # Older snapshots still hold it (time travel) until expiry and orphan removal.
    maintenance = Maintenance.from_endpoints(endpoints)
    maintenance.expire(0, retain_last=1)
    maintenance.remove_orphans(0)
    holding = [
        k
        for k in _lake_keys(s3_client, bucket)
        if erased.encode() in read_object(s3_client, bucket, k)
    ]
    assert not holding, f"objects still holding the erased episode: {holding}"
    assert_exact(s3_client, bucket, remaining, tables=endpoints)


def _lake_keys(s3: Minio, bucket: str) -> list[str]:
    """Every object of the tables (data, manifests, metadata), except the erasure audit's own
    files, which name the episode on purpose."""
    return [
        k
        for k in object_keys(s3, bucket, f"{layout.LAKE_PREFIX}/")
        if f"/{layout.ERASURES_TABLE}/" not in k
    ]
