"""``/metrics`` of one worker is the merge of every worker's (prometheus_client multiprocess
mode): counters summed, in-flight gauges summed over live workers, ``ready`` their minimum.

Each worker is a real interpreter (the mode is chosen when prometheus_client is imported, and
this test process imported it without), as the master starts them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from robolake.collector.errors import CollectorError
from robolake.collector.metrics import CollectorMetrics
from robolake.collector.workers import ENV_METRICS_DIR

_WORKER = """
import sys
from pathlib import Path
from robolake.collector.metrics import CollectorMetrics

index, chunks, ready, inflight = (int(a) for a in sys.argv[1:5])
metrics = CollectorMetrics(worker=index, multiprocess_dir=Path(sys.argv[5]))
metrics.chunks_accepted.inc(chunks)
for _ in range(chunks):
    metrics.worker_requests.inc()
metrics.ready.set(ready)
metrics.inflight_bytes.set(inflight)
metrics.inflight_capacity.set(100)
if len(sys.argv) > 6:
    sys.stdout.buffer.write(metrics.exposition())
"""


def _worker(metrics_dir: Path, *args: int, expose: bool = False) -> str:
    env = {**os.environ, ENV_METRICS_DIR: str(metrics_dir)}
    argv = [sys.executable, "-c", _WORKER, *map(str, args), str(metrics_dir)]
    done = subprocess.run(
        [*argv, "expose"] if expose else argv,
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return done.stdout


def _value(text: str, sample: str) -> float:
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    assert match, f"{sample} not in:\n{text}"
    return float(match.group(1))


def test_any_worker_serves_the_sum_of_all_workers(tmp_path: Path) -> None:
    _worker(tmp_path, 0, 3, 1, 10)
    text = _worker(tmp_path, 1, 4, 1, 5, expose=True)
    assert _value(text, "robolake_collector_chunks_accepted_total") == 7
    assert _value(text, 'robolake_collector_worker_requests_total{worker="0"}') == 3
    assert _value(text, 'robolake_collector_worker_requests_total{worker="1"}') == 4
    assert _value(text, "robolake_collector_inflight_bytes") == 15
    assert _value(text, "robolake_collector_inflight_capacity_bytes") == 200
    assert _value(text, "robolake_collector_ready") == 1
    assert _value(text, 'robolake_collector_rejections_total{reason="draining"}') == 0


def test_ready_is_one_only_when_every_worker_is(tmp_path: Path) -> None:
    _worker(tmp_path, 0, 1, 0, 0)  # e.g. draining, or Kafka unreachable from it
    text = _worker(tmp_path, 1, 1, 1, 0, expose=True)
    assert _value(text, "robolake_collector_ready") == 0


def test_metrics_that_would_stay_in_memory_are_refused(tmp_path: Path) -> None:
    # This process imported prometheus_client without the variable: single-process values.
    if os.environ.get(ENV_METRICS_DIR):
        pytest.skip("this test process itself runs in multiprocess mode")
    with pytest.raises(CollectorError, match="PROMETHEUS_MULTIPROC_DIR"):
        CollectorMetrics(multiprocess_dir=tmp_path)
