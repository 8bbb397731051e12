"""``python -m robolake.recordings.bench EPISODE.hdf5``, the command behind docs/recordings.md's
HDF5 figure, picks the HDF5 candidates by the suffix and reports rows and memory for each."""

from __future__ import annotations

import re

import pytest

from fixtures.hdf5_files import ACT
from robolake.recordings.bench import main


def test_the_hdf5_bench_converts_and_reads_every_mapped_dataset(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([str(ACT)]) == 0
    out = capsys.readouterr().out
    found = {
        m.group(1): (int(m.group(2)), float(m.group(3)))
        for m in re.finditer(r"^([\w-]+) +(\d+) +[\d.]+ +[\d.]+ +(\d+)$", out, re.M)
    }
    # 40 rows of joints, action and camera converted; h5py reads the five mapped datasets.
    assert {name: rows for name, (rows, _) in found.items()} == {
        "robolake-hdf5": 120,
        "h5py-read": 200,
    }
    assert all(rss > 0 for _, rss in found.values()), out
