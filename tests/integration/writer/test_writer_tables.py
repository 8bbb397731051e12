"""Writers with the Iceberg tables as the system of record (``--record tables``), under the
faults the tables issue names: kill -9 between upload and commit, kill -9 between the table
commits of one flush, and a zombie writer thawed after another took its partitions.

Each test counts against what was produced (every chunk once, value for value), reads through
the tables' current snapshots (what readers see), and checks that the fault really happened
where it was meant to (the log of the fault injection, orphans left, a refused commit), so a
test whose fault missed its window fails instead of passing vacuously.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

from minio import Minio
from writer_harness import (
    Produced,
    assert_exact,
    indexed,
    object_keys,
    produce_episodes,
    spawn_writer,
    table_files,
    wait_until,
    writer_settings,
)

from robolake.endpoints import Endpoints
from robolake.lake import layout
from robolake.lake.catalog import LakeTables
from robolake.lake.offsets import recorded
from robolake.writer.settings import ENV_COMMIT_PAUSE, ENV_UPLOAD_PAUSE


def _token(log: str) -> str:
    match = re.search(r"writer token ([0-9a-f]{12})", log)
    assert match, "the writer did not log its token"
    return match.group(1)


def _orphans(s3: Minio, endpoints: Endpoints) -> list[str]:
    """Data files under the tables' locations that no current snapshot references."""
    referenced = {key for _, key in table_files(endpoints)}
    stored = object_keys(s3, endpoints.s3_bucket, f"{layout.LAKE_PREFIX}/")
    return [k for k in stored if "/data/" in k and k not in referenced]


def _index_offsets(endpoints: Endpoints, topic: str) -> dict[int, int]:
    tables = LakeTables.from_endpoints(endpoints)
    return recorded(tables.load(layout.INDEX_TABLE).metadata, topic).offsets


async def test_kill_9_between_upload_and_commit_leaves_orphans_never_duplicates(
    endpoints: Endpoints, kafka_topic: str, dlq_topic: str, s3_client: Minio, tmp_path: Path
) -> None:
    settings = writer_settings(kafka_topic, dlq_topic, flush_bytes=256 * 1024, record="tables")
    log_path = tmp_path / "writer.log"
    first = spawn_writer(log_path, endpoints, settings, env={ENV_UPLOAD_PAUSE: "1.0"})
    produced = Produced()
    try:
        await produce_episodes(endpoints, kafka_topic, range(300, 303), produced)
        await wait_until(lambda: "flushed offsets" in first.log(), timeout=60, what="a flush")
        seen = first.log().count("fault injection")
        await produce_episodes(endpoints, kafka_topic, range(303, 306), produced)
        await wait_until(
            lambda: first.log().count("fault injection") > seen,
            timeout=60,
            what="a flush half uploaded",
        )
        first.signal(signal.SIGKILL)
        assert first.wait() == -signal.SIGKILL
    finally:
        first.kill()
    orphans = _orphans(s3_client, endpoints)
    assert orphans, "the killed flush left no uploaded-but-uncommitted file"

    second = spawn_writer(log_path, endpoints, settings)
    try:
        await wait_until(
            lambda: (
                len(indexed(s3_client, endpoints.s3_bucket, tables=endpoints))
                == len(produced.episodes)
            ),
            timeout=90,
            what="every episode indexed after the restart",
        )
        second.signal(signal.SIGTERM)
        assert second.wait() == 0, second.log()[-3000:]
    finally:
        second.kill()
    assert set(orphans) <= set(_orphans(s3_client, endpoints)), "an orphan was committed"
    assert_exact(s3_client, endpoints.s3_bucket, produced, tables=endpoints)


async def test_kill_9_between_the_table_commits_of_one_flush_stores_each_chunk_once(
    endpoints: Endpoints, kafka_topic: str, dlq_topic: str, s3_client: Minio, tmp_path: Path
) -> None:
    settings = writer_settings(kafka_topic, dlq_topic, record="tables")
    log_path = tmp_path / "writer.log"
    produced = Produced()
    await produce_episodes(endpoints, kafka_topic, range(400, 404), produced)
    first = spawn_writer(log_path, endpoints, settings, env={ENV_COMMIT_PAUSE: "60"})
    try:
        await wait_until(
            lambda: "fault injection" in first.log(),
            timeout=60,
            what="a flush committed to its first table, not yet to the index",
        )
        first.signal(signal.SIGKILL)
        assert first.wait() == -signal.SIGKILL
    finally:
        first.kill()

    second = spawn_writer(log_path, endpoints, settings)
    try:
        await wait_until(
            lambda: (
                len(indexed(s3_client, endpoints.s3_bucket, tables=endpoints))
                == len(produced.episodes)
            ),
            timeout=90,
            what="every episode indexed after the restart",
        )
        second.signal(signal.SIGTERM)
        assert second.wait() == 0, second.log()[-3000:]
    finally:
        second.kill()
    assert "ahead of the index" in second.log(), "the restart did not meet a half-committed flush"
    assert_exact(s3_client, endpoints.s3_bucket, produced, tables=endpoints)


async def test_a_thawed_zombie_writer_lands_nothing(
    endpoints: Endpoints, kafka_topic: str, dlq_topic: str, s3_client: Minio, tmp_path: Path
) -> None:
    settings = writer_settings(kafka_topic, dlq_topic, record="tables", flush_age_s=2.0)
    produced = Produced()
    await produce_episodes(endpoints, kafka_topic, range(500, 503), produced)
    # The zombie holds still after each upload, so it can be frozen with files uploaded and
    # nothing committed.
    zombie = spawn_writer(tmp_path / "zombie.log", endpoints, settings, env={ENV_UPLOAD_PAUSE: "3"})
    successor = None
    try:
        await wait_until(
            lambda: "fault injection" in zombie.log(), timeout=60, what="the zombie uploading"
        )
        zombie.signal(signal.SIGSTOP)  # frozen past its session timeout
        frozen_at = time.monotonic()
        # The flushes it froze in: file stems (topic+partition+first-flush-token) it uploaded.
        frozen = set(re.findall(r"uploaded \S+/([^/\s]+)\.parquet \(offsets", zombie.log()))
        assert frozen, "no upload of the zombie was logged"
        assert all(_token(zombie.log()) in stem for stem in frozen)
        successor = spawn_writer(tmp_path / "successor.log", endpoints, settings)
        await wait_until(
            lambda: (
                len(indexed(s3_client, endpoints.s3_bucket, tables=endpoints))
                == len(produced.episodes)
            ),
            timeout=120,
            what="the successor indexing every episode",
        )
        assert time.monotonic() - frozen_at > settings.session_timeout_s
        offsets = _index_offsets(endpoints, kafka_topic)
        zombie.signal(signal.SIGCONT)
        await wait_until(
            lambda: "fenced" in zombie.log() or zombie.proc.poll() is not None,
            timeout=120,
            what="the thawed zombie trying to commit",
        )
        await produce_episodes(endpoints, kafka_topic, range(503, 505), produced)
        await wait_until(
            lambda: (
                len(indexed(s3_client, endpoints.s3_bucket, tables=endpoints))
                == len(produced.episodes)
            ),
            timeout=120,
            what="later episodes indexed",
        )
        for process in (successor, zombie):
            if process.proc.poll() is None:
                process.signal(signal.SIGTERM)
                process.wait()
    finally:
        if zombie.proc.poll() is None:
            zombie.signal(signal.SIGCONT)
        zombie.kill()
        if successor is not None:
            successor.kill()
    assert "fenced" in zombie.log(), zombie.log()[-3000:]
    # Flushes it committed before it froze are legitimate, and so are new ones after it
    # rejoined the group and resumed from the tables; the flush it froze in must not land.
    committed = [key for _, key in table_files(endpoints)]
    landed = [k for k in committed if any(stem in k for stem in frozen)]
    assert not landed, f"files of the zombie's frozen flush landed: {landed}"
    after = _index_offsets(endpoints, kafka_topic)
    assert all(after[p] >= o for p, o in offsets.items()), "the zombie rewound an offset"
    assert_exact(s3_client, endpoints.s3_bucket, produced, tables=endpoints)
