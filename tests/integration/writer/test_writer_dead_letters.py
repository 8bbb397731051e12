"""Device retries are written once -- in the same flush, in a later flush and after a restart --
while poison records, broken chunks and conflicting duplicates go to dead letters and the rest
flows on."""

from __future__ import annotations

from minio import Minio
from writer_harness import (
    InProcessWriter,
    Produced,
    assert_exact,
    indexed,
    produce_episode,
    producer,
    read_all,
    send_chunk,
    small_episode,
    start_writer,
    wait_until,
    writer_settings,
)

from robolake.endpoints import Endpoints
from robolake.episode.records import chunk_record
from robolake.writer.metrics import FLUSH_REASONS


def flush_count(writer: InProcessWriter) -> float:
    return sum(writer.value("robolake_writer_flushes_total", {"reason": r}) for r in FLUSH_REASONS)


async def test_duplicates_written_once_and_bad_records_dead_lettered(
    endpoints: Endpoints, kafka_topic: str, dlq_topic: str, s3_client: Minio
) -> None:
    settings = writer_settings(kafka_topic, dlq_topic)
    bucket = endpoints.s3_bucket
    produced = Produced()
    episode, other, later = small_episode(600), small_episode(601), small_episode(602)
    episode_id = episode.manifest.episode_id
    kafka = producer(endpoints.kafka_bootstrap)
    await kafka.start()
    writer = start_writer(settings, endpoints)
    try:
        chunks = await produce_episode(kafka, kafka_topic, episode, produced, complete=False)
        # Retries right away (same flush) ...
        await send_chunk(kafka, kafka_topic, episode, "cam_head", 0, chunks["cam_head"][0])
        await send_chunk(kafka, kafka_topic, episode, "imu", 0, chunks["imu"][0])
        # ... a poison record, a chunk that is not Arrow, a different chunk under a used key.
        poison = await kafka.send_and_wait(
            kafka_topic, b"\x00garbage", key=episode_id.encode(), headers=[("kind", b"chunk")]
        )
        broken = b"not an arrow stream"
        meta = chunk_record(episode.manifest, "imu", 99, broken)
        not_arrow = await kafka.send_and_wait(
            kafka_topic, broken, key=meta.key, headers=meta.headers()
        )
        imposter = other.chunks(64 * 1024)["joint_state"][0]
        meta = chunk_record(episode.manifest, "joint_state", 0, imposter)
        conflicting = await kafka.send_and_wait(
            kafka_topic, imposter, key=meta.key, headers=meta.headers()
        )
        await wait_until(
            lambda: writer.value("robolake_writer_records_total", {"outcome": "dead_letter"}) == 3,
            timeout=30,
            what="three dead letters",
        )
        await wait_until(
            lambda: (
                flush_count(writer) >= 1 and writer.value("robolake_writer_buffered_bytes") == 0
            ),
            timeout=30,
            what="the buffer flushed",
        )
        # ... and a retry landing in a later flush.
        await send_chunk(kafka, kafka_topic, episode, "cam_head", 1, chunks["cam_head"][1])
        await produce_episode(kafka, kafka_topic, other, produced)
        await wait_until(
            lambda: other.manifest.episode_id in indexed(s3_client, bucket, tables=endpoints),
            timeout=30,
            what="the next episode flowing past the poison",
        )
        duplicates = writer.value("robolake_writer_records_total", {"outcome": "duplicate"})
        await writer.stop()

        # A restarted writer still knows the chunks: late retries are dropped.
        writer = start_writer(settings, endpoints)
        for seq in range(3):
            await send_chunk(kafka, kafka_topic, episode, "cam_head", seq, chunks["cam_head"][seq])
        await produce_episode(kafka, kafka_topic, later, produced)
        await wait_until(
            lambda: later.manifest.episode_id in indexed(s3_client, bucket, tables=endpoints),
            timeout=30,
            what="the episode after the restart",
        )
        late = writer.value("robolake_writer_records_total", {"outcome": "duplicate"})
    finally:
        await kafka.stop()
        await writer.stop()
    assert duplicates == 3
    assert late == 3
    assert_exact(s3_client, bucket, produced, tables=endpoints)

    letters = await read_all(endpoints.kafka_bootstrap, dlq_topic, expect=3)
    # Each dead letter points at exactly the record it replaces, and carries it unchanged.
    found = {}
    for letter in letters:
        headers = {name: value.decode() for name, value in letter.headers}
        assert headers["dlq_source_topic"] == kafka_topic
        source = (int(headers["dlq_source_partition"]), int(headers["dlq_source_offset"]))
        found[source] = (headers["dlq_reason"], headers["dlq_message"], letter.value)
    assert len(letters) == 3, f"{len(letters)} dead letters, expected 3: {sorted(found)}"
    expected = {
        (poison.partition, poison.offset): ("record_invalid", b"\x00garbage"),
        (not_arrow.partition, not_arrow.offset): ("malformed_arrow", broken),
        (conflicting.partition, conflicting.offset): ("record_invalid", imposter),
    }
    assert {k: (reason, value) for k, (reason, _, value) in found.items()} == expected
    assert found[(conflicting.partition, conflicting.offset)][1].startswith("conflicting_duplicate")
