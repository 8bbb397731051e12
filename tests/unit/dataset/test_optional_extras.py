"""The library imports without the ML extra; the PyTorch module says what to install."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
sys.modules["torch"] = None  # as if PyTorch were not installed
import robolake.dataset
from robolake.dataset import RobolakeDataset, EpisodeFilter, align_streams
import robolake.dataset.lerobot_export, robolake.dataset.cli
from robolake.dataset.errors import MissingExtraError
try:
    import robolake.dataset.pytorch
except MissingExtraError as exc:
    print(exc)
"""


def test_imports_without_torch_and_names_the_extra() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                            check=True, timeout=120)  # fmt: skip
    assert "pip install 'robolake[ml]'" in result.stdout
    assert "'torch'" in result.stdout
