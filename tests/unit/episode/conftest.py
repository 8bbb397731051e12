"""Fixtures of the episode contract tests: the registry and a small synthetic episode."""

from __future__ import annotations

import pytest

from robolake.episode.stream_types import StreamTypeRegistry, default_registry
from robolake.episode.synthetic import SyntheticEpisode, SyntheticSpec, generate_episode


@pytest.fixture(scope="session")
def registry() -> StreamTypeRegistry:
    return default_registry()


@pytest.fixture(scope="session")
def episode() -> SyntheticEpisode:
    """Two seconds of the default humanoid, small frame pool: enough rows for every check."""
    return generate_episode(SyntheticSpec(seed=7, duration_s=2.0, frame_pool=4))
