"""Converting a bag streams it: peak memory does not grow with the bag's size.

Two bags written by make_bags.py at 640x480 (rgb8 + JPEG at 30 Hz), 2 s and 8 s long (about
70 and 270 MB), each converted whole -- both passes, every Arrow batch -- by
``python -m robolake.recordings.bench`` in a child process that reports its own peak RSS. A
conversion holding the bag, or its rows, would need ~200 MB more for the longer one.
docs/recordings.md has the same measurement on 1 and 2 GB bags.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

MAKE_BAGS = Path(__file__).resolve().parents[2] / "fixtures" / "ros2" / "make_bags.py"


def _converted(tmp_path: Path, seconds: int) -> tuple[int, float, float]:
    """(rows, MB of bag, peak RSS MiB) of converting a ``seconds``-long bag."""
    bag = tmp_path / f"bag_{seconds}s"
    subprocess.run(
        [sys.executable, str(MAKE_BAGS), str(bag), "--seconds", str(seconds)],
        check=True,
        timeout=300,
    )
    mcap = next(bag.glob("*.mcap"))
    done = subprocess.run(
        [sys.executable, "-m", "robolake.recordings.bench", str(mcap), "--child", "robolake"],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    result = json.loads(done.stdout)
    size_mb = mcap.stat().st_size / 1e6
    mcap.unlink()
    return result["count"], size_mb, result["peak_rss_mib"]


def test_peak_memory_does_not_grow_with_the_bag(tmp_path: Path) -> None:
    short_rows, short_mb, short_rss = _converted(tmp_path, 2)
    long_rows, long_mb, long_rss = _converted(tmp_path, 8)
    print(
        f"bag conversion peak RSS: {short_mb:.0f} MB -> {short_rss:.0f} MiB, "
        f"{long_mb:.0f} MB -> {long_rss:.0f} MiB"
    )
    assert long_rows > 3 * short_rows  # the long bag really is four times the data
    assert long_mb - short_mb > 150
    assert long_rss - short_rss < 48, (short_rss, long_rss)
