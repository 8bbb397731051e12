"""Engines robolake did not write (DuckDB, Spark, Polars) on tables a real writer filled.

Each test gets a fresh bucket and namespace (``lake_endpoints``), fills them with a real
``robolake writer --record tables`` process from produced episodes, and compares what the engine
reads with pyiceberg's reading of the same snapshot.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from engines_harness import FilledLake, Produced, create_topic, writer_settings
from minio import Minio

from robolake.endpoints import Endpoints


@pytest.fixture
async def filled_lake(
    lake_endpoints: Endpoints, kafka_topic: str, s3_client: Minio, tmp_path: Path
) -> FilledLake:
    """Four episodes (every stream type, one camera) written to the tables by a real writer."""
    dlq = await create_topic(lake_endpoints.kafka_bootstrap)
    lake = FilledLake(
        endpoints=lake_endpoints,
        topic=kafka_topic,
        # Small flushes: several data files and snapshots per table, for compaction to merge.
        settings=writer_settings(kafka_topic, dlq, record="tables", flush_bytes=128 * 1024),
        produced=Produced(),
        log_path=tmp_path / "writer.log",
        s3=s3_client,
    )
    await lake.produce(range(700, 704))
    await lake.run_writer()
    return lake
