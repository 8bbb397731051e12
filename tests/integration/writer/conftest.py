"""Fixtures of writer integration tests: a dead-letter topic and endpoints on the test's bucket."""

from __future__ import annotations

import pytest
from isolation import isolated
from writer_harness import create_topic

from robolake.endpoints import Endpoints


@pytest.fixture
async def dlq_topic(stack_endpoints: Endpoints) -> str:
    return await create_topic(stack_endpoints.kafka_bootstrap)


@pytest.fixture
def endpoints(stack_endpoints: Endpoints, s3_bucket: str) -> Endpoints:
    """The stack's endpoints with the test's own bucket as the dataset bucket, and its own
    Iceberg namespace (used by writers with ``--record tables``)."""
    return isolated(stack_endpoints, s3_bucket)
