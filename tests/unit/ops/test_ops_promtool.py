"""promtool on deploy/prometheus/: configs and rules are valid, and every rule's unit tests pass.

promtool comes with the local stack's Prometheus (``robolake stack install``; ``make test`` runs
``setup`` first). Without it these tests skip and say how to get it.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from robolake.stack import prometheus

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
RULES = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
RULE_TESTS = sorted((DEPLOY / "prometheus" / "tests").glob("*.yml"))
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "robolake.json"


@pytest.fixture(scope="module")
def promtool() -> Path:
    path = prometheus.binary_path("promtool")
    if not path.is_file():
        pytest.skip(f"promtool not installed at {path}; run `robolake stack install`")
    return path


def _run(promtool: Path, *args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [str(promtool), *args], capture_output=True, text=True, check=False, cwd=cwd
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


def test_rules_are_valid(promtool: Path) -> None:
    assert RULES, "no rule files in deploy/prometheus/rules"
    output = _run(promtool, "check", "rules", *map(str, RULES))
    counts = [int(n) for n in re.findall(r"SUCCESS: (\d+) rules found", output)]
    assert len(counts) == len(RULES), output
    assert all(counts), output


def test_every_rule_passes_its_unit_tests(promtool: Path) -> None:
    assert RULE_TESTS
    output = _run(
        promtool, "test", "rules", *(p.name for p in RULE_TESTS), cwd=RULE_TESTS[0].parent
    )
    assert "FAILED" not in output, output


def test_compose_config_is_valid(promtool: Path) -> None:
    _run(promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.compose.yml"))


def test_local_stack_config_loads_every_rule_file(promtool: Path, tmp_path: Path) -> None:
    config = prometheus.write_config(tmp_path, minio_port=9000, port=9090)
    output = _run(promtool, "check", "config", str(config))
    assert f"SUCCESS: {len(RULES)} rule files found" in output, output


def _rule_names(kind: str) -> set[str]:
    names: set[str] = set()
    for path in RULES:
        names.update(re.findall(rf"^\s*- {kind}: (\S+)\s*$", path.read_text(), re.MULTILINE))
    return names


def test_every_alert_and_recording_rule_has_a_unit_test() -> None:
    tests_text = "\n".join(p.read_text() for p in RULE_TESTS)
    untested_alerts = {a for a in _rule_names("alert") if f"alertname: {a}" not in tests_text}
    untested_records = {r for r in _rule_names("record") if f"expr: {r}\n" not in tests_text}
    assert not untested_alerts, f"alerts without promtool tests: {sorted(untested_alerts)}"
    assert not untested_records, f"recording rules without tests: {sorted(untested_records)}"


def test_dashboard_uses_only_recorded_series() -> None:
    recorded = _rule_names("record")
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs
    used = {name for expr in exprs for name in re.findall(r"robolake:[a-z0-9_:]+", expr)}
    assert used <= recorded, f"dashboard queries unknown recording rules: {used - recorded}"
