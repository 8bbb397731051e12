"""Fixtures of writer integration tests: a dead-letter topic and endpoints on the test's bucket."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
from writer_harness import create_topic

from robolake.endpoints import Endpoints


@pytest.fixture
async def dlq_topic(stack_endpoints: Endpoints) -> str:
    return await create_topic(stack_endpoints.kafka_bootstrap)


@pytest.fixture
def endpoints(stack_endpoints: Endpoints, s3_bucket: str) -> Endpoints:
    """The stack's endpoints with the test's own bucket as the dataset bucket, and its own
    Iceberg namespace (used by writers with ``--record tables``)."""
    return replace(
        stack_endpoints, s3_bucket=s3_bucket, catalog_namespace=f"t_{uuid.uuid4().hex[:16]}"
    )
