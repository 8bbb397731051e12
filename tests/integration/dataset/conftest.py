"""One dataset, made once per run by the real pipeline, shared by the ML reader tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from dataset_harness import ProducedDataset, produce
from minio import Minio

from robolake.endpoints import Endpoints
from robolake.episode.topics import MAX_RECORD_BYTES


async def _create_topic(endpoints: Endpoints, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=endpoints.kafka_bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(name, 3, 1, topic_configs={"max.message.bytes": str(MAX_RECORD_BYTES)})]
        )
        assert all(code == 0 for _, code, *_ in response.topic_errors), response
    finally:
        await admin.close()


async def _delete_topic(endpoints: Endpoints, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=endpoints.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([name])
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def produced(
    stack_endpoints: Endpoints, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProducedDataset]:
    """Seven episodes through collector and writer processes into a bucket of their own."""
    name = f"test-ml-{uuid.uuid4().hex[:16]}"
    Minio(
        stack_endpoints.s3_host,
        access_key=stack_endpoints.s3_access_key,
        secret_key=stack_endpoints.s3_secret_key,
        secure=stack_endpoints.s3_secure,
        region=stack_endpoints.s3_region,
    ).make_bucket(name)
    asyncio.run(_create_topic(stack_endpoints, name))
    try:
        workdir = tmp_path_factory.mktemp("ml-dataset")
        yield asyncio.run(produce(stack_endpoints, name, name, workdir))
    finally:
        asyncio.run(_delete_topic(stack_endpoints, name))
