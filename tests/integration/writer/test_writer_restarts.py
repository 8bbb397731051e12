"""Issue 15's restart matrix: whatever ends a writer, its successor loses and doubles nothing.

Every cell runs the same story against the real broker and MinIO with ``robolake writer``
processes: episodes complete, one is never completed and times out while its partition is idle
(the index-only flush that once made a restart throw every partition's state away), then the
fault, then a new owner; the device retries already-acknowledged chunks (inside the dedup
window) and completes the timed-out episode. At the end every acknowledged chunk is in the
shards exactly once, no index row went missing at any point, and the late completion turned
the timed-out episode's row complete.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from minio import Minio
from writer_harness import (
    Produced,
    WriterProcess,
    assert_exact,
    indexed,
    produce_episode,
    producer,
    send_chunk,
    small_episode,
    spawn_writer,
    wait_until,
    writer_settings,
)

from robolake.endpoints import Endpoints
from robolake.episode.records import complete_record

#: Seconds of silence after which an episode is indexed as incomplete (the defect's timeout).
INCOMPLETE_AFTER_S = 3.0


def _stop(process: WriterProcess, sig: int) -> None:
    process.signal(sig)
    code = process.wait()
    assert code == (0 if sig == signal.SIGTERM else -sig), process.log()[-3000:]


@pytest.mark.parametrize("record", ["bucket", "tables"])
@pytest.mark.parametrize("fault", ["clean_stop", "sigkill", "rebalance", "restart_twice"])
async def test_restart_matrix_loses_and_duplicates_nothing(
    fault: str,
    record: str,
    endpoints: Endpoints,
    kafka_topic: str,
    dlq_topic: str,
    s3_client: Minio,
    tmp_path: Path,
) -> None:
    settings = writer_settings(
        kafka_topic, dlq_topic, incomplete_after_s=INCOMPLETE_AFTER_S, record=record
    )
    bucket = endpoints.s3_bucket
    view = endpoints if record == "tables" else None  # read the tables, or list the bucket
    log_path = tmp_path / "writer.log"
    episodes = [small_episode(seed) for seed in range(900, 904)]
    timed_out = episodes[-1]
    produced = Produced()
    writers: list[WriterProcess] = [spawn_writer(log_path, endpoints, settings)]
    kafka = producer(endpoints.kafka_bootstrap)
    await kafka.start()
    try:
        sent: dict[str, dict[str, list[bytes]]] = {}
        for episode in episodes:
            sent[episode.manifest.episode_id] = await produce_episode(
                kafka, kafka_topic, episode, produced, complete=episode is not timed_out
            )
        await wait_until(
            lambda: len(indexed(s3_client, bucket, tables=view)) == len(episodes),
            timeout=90,
            what="every episode indexed, the last one by its timeout",
        )
        before = indexed(s3_client, bucket, tables=view)
        assert before[timed_out.manifest.episode_id]["complete"] is False

        first = writers[0]
        if fault == "clean_stop":
            _stop(first, signal.SIGTERM)
            writers.append(spawn_writer(log_path, endpoints, settings))
        elif fault == "sigkill":
            _stop(first, signal.SIGKILL)
            writers.append(spawn_writer(log_path, endpoints, settings))
        elif fault == "restart_twice":
            for _ in range(2):
                _stop(writers[-1], signal.SIGTERM)
                writers.append(spawn_writer(log_path, endpoints, settings))
                await wait_until(
                    lambda: (
                        writers[-1].log().count("resuming at committed offset") >= 3 * len(writers)
                    ),
                    timeout=60,
                    what="the new writer resuming every partition",
                )
        else:  # rebalance: a second member joins, takes partitions, then the first leaves
            second = spawn_writer(tmp_path / "b.log", endpoints, settings)
            writers.append(second)
            await wait_until(
                lambda: "resuming at committed offset" in second.log(),
                timeout=60,
                what="the second writer assigned a partition",
            )
            _stop(first, signal.SIGTERM)
        await wait_until(
            lambda: indexed(s3_client, bucket, tables=view).keys() >= before.keys(),
            timeout=30,
            what="the index as it was",
        )
        assert (
            indexed(s3_client, bucket, tables=view).keys() == before.keys()
        )  # nothing lost by the fault

        # The device retries acknowledged chunks, then completes the timed-out episode.
        for episode in episodes:
            chunks = sent[episode.manifest.episode_id]
            stream = next(iter(chunks))
            await send_chunk(kafka, kafka_topic, episode, stream, 0, chunks[stream][0])
        document = timed_out.completion_document(sent[timed_out.manifest.episode_id])
        value = json.dumps(document, separators=(",", ":")).encode()
        meta = complete_record(timed_out.manifest, value)
        await kafka.send_and_wait(kafka_topic, value, key=meta.key, headers=meta.headers())
        await wait_until(
            lambda: bool(
                indexed(s3_client, bucket, tables=view)
                .get(timed_out.manifest.episode_id, {})
                .get("complete")
            ),
            timeout=90,
            what="the late completion indexed",
        )
        for writer in writers:
            if writer.proc.poll() is None:
                _stop(writer, signal.SIGTERM)
    finally:
        await kafka.stop()
        for writer in writers:
            writer.kill()
    after = indexed(s3_client, bucket, tables=view)
    assert after.keys() == before.keys()
    assert all(row["complete"] for row in after.values())
    rows = assert_exact(s3_client, bucket, produced, tables=view)
    print(
        f"{fault}/{record}: {len(produced.chunks)} chunks, {rows} rows, "
        f"{len(after)} index rows, exact"
    )
