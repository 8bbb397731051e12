"""``python -m robolake.recordings.bench``, the command docs/recordings.md's numbers come from,
runs its candidates in child processes and reports what each went through."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from robolake.recordings.bench import main

BAG = Path(__file__).resolve().parents[2] / "fixtures" / "ros2" / "arm.mcap"


def test_the_bench_reports_rows_messages_and_memory(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(BAG), "--candidates", "robolake", "rosbags"]) == 0
    out = capsys.readouterr().out
    found = {
        m.group(1): (int(m.group(2)), float(m.group(3)))
        for m in re.finditer(r"^(\w+) +(\d+) +[\d.]+ +[\d.]+ +(\d+)$", out, re.M)
    }
    # 373 rows of the six streams; rosbags decodes all 378 messages (CameraInfo and the
    # unmapped BatteryState topic too).
    assert {name: rows for name, (rows, _) in found.items()} == {"robolake": 373, "rosbags": 378}
    assert all(rss > 0 for _, rss in found.values()), out
