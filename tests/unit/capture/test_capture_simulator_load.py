"""The simulator says who set a run's pace: a low figure the simulator caused is not robolake's."""

from __future__ import annotations

from typing import Any

import pytest

from robolake.capture.simulator import SimulationResult


def _result(**changes: Any) -> SimulationResult:
    base: dict[str, Any] = {
        "capture_points": 1000, "active_capture_points": 1000, "episodes_started": 100,
        "episodes_completed": 100, "chunks": 500, "bytes": 600_000_000, "seconds": 60.0,
        "retries": 0, "errors": {}, "ack_p50_ms": 100.0, "ack_p99_ms": 200.0,
        "failed_episodes": 0, "asked_mb_per_s": 10.0, "generate_s": 50.0, "upload_s": 40.0,
    }  # fmt: skip
    return SimulationResult(**{**base, **changes})


def test_a_run_at_the_asked_rate_is_met() -> None:
    met = _result()  # 10 MB/s achieved of 10 asked
    assert met.limiter == "met"
    assert "asked 10.0 MB/s, achieved 10.0 MB/s (100%): the asked load was met" in met.render()
    assert _result(bytes=540_000_000).limiter == "met"  # 90% counts as met
    assert _result(asked_mb_per_s=0.0, bytes=1).limiter == "met"  # unpaced: nothing to miss


@pytest.mark.parametrize(
    ("generate_s", "upload_s", "limiter", "says"),
    [
        (300.0, 100.0, "simulator", "the SIMULATOR could not keep up"),
        (100.0, 300.0, "system", "robolake (or the machine it shares) could not keep up"),
    ],
)
def test_a_short_run_names_who_could_not_keep_up(
    generate_s: float, upload_s: float, limiter: str, says: str
) -> None:
    short = _result(bytes=300_000_000, generate_s=generate_s, upload_s=upload_s,
                    episodes_behind=40, behind_s=95.0)  # fmt: skip
    assert short.limiter == limiter
    line = short.load_line()
    assert line.startswith("asked 10.0 MB/s, achieved 5.0 MB/s (50%): ")
    assert says in line
    assert "40 episodes started late, 95 s in all" in line
    assert short.to_json()["limiter"] == limiter
