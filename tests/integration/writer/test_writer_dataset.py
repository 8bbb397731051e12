"""A generated workload becomes shards and an episodes index holding exactly what was produced,
readable with plain pyarrow and with DuckDB."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
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
    start_writer,
    wait_until,
    writer_settings,
)

from robolake.endpoints import Endpoints
from robolake.episode.shards import episodes_index


def stored_bytes(s3: Minio, bucket: str) -> int:
    return sum(
        o.size
        for prefix in ("shards/", "index/")
        for o in s3.list_objects(bucket, prefix=prefix, recursive=True)
    )


async def test_workload_lands_exactly_and_reads_back_with_pyarrow_and_duckdb(
    endpoints: Endpoints, kafka_topic: str, dlq_topic: str, s3_client: Minio, tmp_path: Path
) -> None:
    settings = writer_settings(kafka_topic, dlq_topic, incomplete_after_s=2.0, record="bucket")
    writer = start_writer(settings, endpoints)
    produced = Produced()
    began = time.monotonic()
    kafka = producer(endpoints.kafka_bootstrap)
    await kafka.start()
    try:
        for seed in range(4):
            await produce_episode(kafka, kafka_topic, small_episode(100 + seed), produced)
        # An episode that never completes and lost a chunk on the way.
        unfinished = small_episode(200)
        await produce_episode(
            kafka, kafka_topic, unfinished, produced, complete=False, skip=[("cam_head", 1)]
        )
    finally:
        await kafka.stop()
    bucket = endpoints.s3_bucket
    try:
        await wait_until(
            lambda: len(indexed(s3_client, bucket)) == len(produced.episodes),
            timeout=60,
            what="every episode indexed",
        )
        elapsed = time.monotonic() - began
        # The gauge is a periodic listing (every 0.5 s here): it must reach what the bucket holds.
        await wait_until(
            lambda: (
                writer.value("robolake_writer_dataset_stored_bytes")
                == stored_bytes(s3_client, bucket)
                > 0
            ),
            timeout=30,
            what="the stored-bytes gauge to equal the bytes of shards and index in the bucket",
        )
    finally:
        await writer.stop()
    rows = assert_exact(s3_client, bucket, produced)
    index = indexed(s3_client, bucket)
    for episode_id in produced.completed:
        assert index[episode_id]["complete"], index[episode_id]["quality_flags"]
        assert "missing_chunks" not in index[episode_id]["quality_flags"]
    row = index[unfinished.manifest.episode_id]
    assert not row["complete"]
    assert "missing_chunks" in row["quality_flags"]
    assert all(s["declared_chunks"] is None for s in row["streams"])
    shard_bytes = writer.value("robolake_writer_shard_bytes_total", {"stream_type": "image.v1"})
    image_objects = list(s3_client.list_objects(bucket, prefix="shards/image.v1/", recursive=True))
    assert shard_bytes == sum(o.size for o in image_objects) > 0
    print(
        f"workload: {len(produced.chunks)} chunks, {rows} rows, {len(index)} index rows, "
        f"{shard_bytes / 2**20:.1f} MiB of image shards, {elapsed:.1f} s end to end"
    )

    # Download the dataset and read it with plain tools, as an ML user would.
    for key in object_keys(s3_client, bucket, "shards/") + object_keys(s3_client, bucket, "index/"):
        path = tmp_path / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(read_object(s3_client, bucket, key))
    joint = ds.dataset(tmp_path / "shards/joint_state.v1", format="parquet", partitioning="hive")
    table = joint.to_table()
    expected = sum(1 for k in produced.chunks if k[1] == "joint_state")
    assert (
        len(set(zip(table["episode_id"].to_pylist(), table["seq"].to_pylist(), strict=False)))
        == expected
    )
    assert "date" in table.column_names
    index_table = ds.dataset(tmp_path / "index/episodes", format="parquet", partitioning="hive")
    assert index_table.schema.remove_metadata().field("streams").type == (
        episodes_index().schema.field("streams").type
    )

    con = duckdb.connect()
    image_glob = str(tmp_path / "shards/image.v1/*/*.parquet")
    (count, episodes) = con.execute(
        f"select count(*), count(distinct episode_id) from read_parquet('{image_glob}', "
        "hive_partitioning=true)"
    ).fetchone() or (0, 0)
    assert episodes == len(produced.episodes)
    assert count == sum(
        r["rows"] for row in index.values() for r in row["streams"] if r["type"] == "image"
    )
    index_glob = str(tmp_path / "index/episodes/*/*.parquet")
    complete = con.execute(
        f"select episode_id from read_parquet('{index_glob}', hive_partitioning=true) "
        "where complete and scene = 'warehouse' qualify row_number() over "
        "(partition by episode_id order by indexed_at desc) = 1"
    ).fetchall()
    assert {r[0] for r in complete} == produced.completed
