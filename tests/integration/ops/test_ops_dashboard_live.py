"""The Grafana dashboard against a real run: every panel's query parses and returns data.

A collector, a writer and an exporter run as processes registered as file_sd targets of the test
stack's Prometheus (which loads deploy/prometheus/rules/, so the recording rules the dashboard
uses are evaluated live). After a small simulation, each panel's PromQL -- with Grafana's
variables substituted -- is sent to Prometheus' query API until it returns data, within a bounded
time.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from ops_harness import ops_run, prometheus_query, wait_for

from robolake.endpoints import Endpoints
from robolake.stack import prometheus
from robolake.stack.stack import Stack

DASHBOARD = (
    Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "dashboards" / "robolake.json"
)
#: What Grafana substitutes for its variables; a minute spans many 5 s scrapes.
VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}


def panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, value in VARIABLES.items():
                expr = expr.replace(name, value)
            assert "$" not in expr, f"unsubstituted variable in {panel['title']!r}: {expr}"
            queries.append((f"{panel['title']} [{target['refId']}]", expr))
    return queries


def _has_data(data: dict[str, Any]) -> bool:
    if data["resultType"] in ("vector", "matrix"):
        return bool(data["result"])
    return data["result"] is not None


async def test_every_dashboard_panel_returns_data_from_a_live_run(
    local_stack: Stack, stack_endpoints: Endpoints, kafka_topic: str, s3_bucket: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    url = stack_endpoints.prometheus_url
    assert url, "the test stack has no Prometheus"
    queries = panel_queries()
    assert len(queries) >= 20
    targets = prometheus.targets_dir(local_stack.state_dir / "prometheus")
    async with ops_run(
        stack_endpoints, kafka_topic, s3_bucket, tmp_path,
        targets=targets, capture_points=12, duration_s=8.0,
    ) as run:  # fmt: skip
        episodes = run.result.episodes_completed
        # The exporter has scanned the whole run and Prometheus has scraped it.
        await wait_for(url, f'sum(robolake_dataset_episodes{{test="{kafka_topic}"}})', episodes)
        deadline = time.monotonic() + 60
        missing: dict[str, str] = {}
        while True:
            missing = {}
            for title, expr in queries:
                data = await prometheus_query(url, expr)  # a parse error fails here
                if not _has_data(data):
                    missing[title] = expr
            if not missing or time.monotonic() > deadline:
                break
            await asyncio.sleep(2.0)
        assert not missing, f"panels without data after the run: {json.dumps(missing, indent=1)}"
        eta = await prometheus_query(url, "robolake:dataset_eta_timestamp_seconds")
        assert float(eta["result"][0]["value"][1]) > time.time()
        # The recording rules catch up within an evaluation interval or two.
        await wait_for(url, "robolake:dataset_episodes:sum", episodes)
    print(f"dashboard live: {len(queries)} panel queries returned data; {episodes} episodes")
