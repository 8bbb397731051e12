"""The whole pipeline with many simulated capture points: every acknowledged chunk is in the
shards exactly once (capture client → collector process → Kafka → writer process → MinIO)."""

from __future__ import annotations

from pathlib import Path

from pipeline_harness import Pipeline

from robolake.capture.simulator import SimulationConfig, simulate
from robolake.endpoints import Endpoints


async def test_many_capture_points_every_acknowledged_chunk_in_shards_exactly_once(
    stack_endpoints: Endpoints, kafka_topic: str, s3_bucket: str, tmp_path: Path
) -> None:
    async with Pipeline(stack_endpoints, kafka_topic, s3_bucket, tmp_path) as pipeline:
        result = await simulate(
            SimulationConfig(
                collector_url=pipeline.collector_url,
                devices_file=pipeline.devices_file,
                spool_dir=tmp_path / "spool",
                capture_points=200,
                duration_s=12.0,
                rate_mb_s=10.0,
                episode_seconds=2.0,
            )
        )
        audit = await pipeline.audit([(e, s, q) for e, s, q, _ in result.ledger])
    print(
        f"end to end: capture points={result.capture_points} "
        f"(uploaded {result.active_capture_points}) episodes={result.episodes_completed} "
        f"acknowledged chunks={audit.acknowledged} found={audit.found} "
        f"lost={audit.missing} duplicated rows={audit.duplicated_rows} "
        f"shard files={audit.shard_files} errors={result.errors}"
    )
    assert result.failed_episodes == 0
    assert result.active_capture_points > 100  # many points, not a handful
    assert audit.acknowledged == result.chunks > 0
    assert audit.missing == 0
    assert audit.duplicated_rows == 0
