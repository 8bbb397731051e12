"""``robolake migrate``: a bucket written in the listing layout becomes the tables' data, once.

A writer with ``--record bucket`` stores episodes as before the tables; ``migrate --dry-run``
changes nothing; ``migrate`` makes the tables hold exactly those rows; a second run migrates
nothing; a table-mode writer started afterwards resumes from Kafka's committed offset (the tables
know no position yet) and stores the next episodes once -- nothing lost, nothing doubled.
"""

from __future__ import annotations

import signal
from dataclasses import replace
from pathlib import Path

from minio import Minio
from writer_harness import (
    Produced,
    assert_exact,
    indexed,
    produce_episodes,
    spawn_writer,
    table_files,
    wait_until,
    writer_settings,
)

from robolake.endpoints import Endpoints
from robolake.lake.migrate import migrate


async def test_migrate_registers_the_bucket_layout_once_and_the_writer_goes_on(
    endpoints: Endpoints, kafka_topic: str, dlq_topic: str, s3_client: Minio, tmp_path: Path
) -> None:
    bucket = endpoints.s3_bucket
    produced = Produced()
    await produce_episodes(endpoints, kafka_topic, range(700, 703), produced)
    # One consumer group for both writers, as in a deployment switching its writers over.
    settings = writer_settings(kafka_topic, dlq_topic, record="bucket")
    old = spawn_writer(tmp_path / "old.log", endpoints, settings)
    try:
        await wait_until(
            lambda: len(indexed(s3_client, bucket)) == len(produced.episodes),
            timeout=90,
            what="the bucket-layout writer indexing every episode",
        )
        old.signal(signal.SIGTERM)
        assert old.wait() == 0, old.log()[-3000:]
    finally:
        old.kill()
    assert_exact(s3_client, bucket, produced)  # the listing layout holds them

    dry = migrate(endpoints, dry_run=True)
    assert dry.to_do, "nothing to migrate in a bucket-layout dataset"
    assert not table_files(endpoints), "a dry run committed files"

    done = migrate(endpoints)
    assert sum(done.committed.values()) == len(dry.to_do)
    assert_exact(s3_client, bucket, produced, tables=endpoints)
    assert indexed(s3_client, bucket, tables=endpoints).keys() == produced.episodes

    again = migrate(endpoints)
    assert not again.to_do
    assert again.already == len(dry.to_do)
    assert_exact(s3_client, bucket, produced, tables=endpoints)

    await produce_episodes(endpoints, kafka_topic, range(703, 705), produced)
    new = spawn_writer(tmp_path / "new.log", endpoints, replace(settings, record="tables"))
    try:
        await wait_until(
            lambda: len(indexed(s3_client, bucket, tables=endpoints)) == len(produced.episodes),
            timeout=90,
            what="the table-mode writer indexing the new episodes",
        )
        new.signal(signal.SIGTERM)
        assert new.wait() == 0, new.log()[-3000:]
    finally:
        new.kill()
    assert_exact(s3_client, bucket, produced, tables=endpoints)
