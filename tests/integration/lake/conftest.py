"""Fixtures of the lake's integration tests: maintenance tests run real writers, so the writer
tests' harness is importable here and a dead-letter topic is at hand."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The writer tests' harness (spawn_writer, produce_episode, assert_exact ...) lives next to them;
# pytest puts only this test's own folder on sys.path.
_WRITER_TESTS = str(Path(__file__).resolve().parents[1] / "writer")
if _WRITER_TESTS not in sys.path:
    sys.path.insert(0, _WRITER_TESTS)

from writer_harness import create_topic  # noqa: E402

from robolake.endpoints import Endpoints  # noqa: E402


@pytest.fixture
async def dlq_topic(stack_endpoints: Endpoints) -> str:
    return await create_topic(stack_endpoints.kafka_bootstrap)
