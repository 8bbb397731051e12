"""Test-suite wide hooks: tests are marked by the folder they live in.

``tests/unit`` holds pure logic (fakes allowed); ``tests/integration`` talks to the real Kafka and
MinIO started by the session fixture in ``tests/integration/conftest.py``. Select with
``-m unit`` or ``-m integration``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_ROOT = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.path)).relative_to(_ROOT).parts
        if parts and parts[0] in ("unit", "integration"):
            item.add_marker(getattr(pytest.mark, parts[0]))
