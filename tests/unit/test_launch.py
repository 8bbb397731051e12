"""The service launcher against tiny ``python -c`` children: what demo, bench and the integration
harnesses rely on (environment, log, readiness, stop by PID) without a broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import pytest

from robolake.endpoints import Endpoints
from robolake.launch import (
    LaunchError,
    ServiceProcess,
    http_ok,
    py_spy,
    service_env,
    stop_all,
)
from robolake.stack.process import free_port

ENDPOINTS = Endpoints(
    kafka_bootstrap="127.0.0.1:19092",
    s3_endpoint="http://127.0.0.1:19000",
    s3_access_key="access",
    s3_secret_key="secret",
    s3_bucket="from-endpoints",
)

#: Installs its SIGTERM behaviour, then says so: a test may only signal it after that line.
IGNORES_TERM = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, lambda *_: print('ignoring SIGTERM', flush=True))\n"
    "print('ready', flush=True)\n"
    "for _ in range(600):\n"
    "    time.sleep(0.1)\n"
)
DRAINS_ON_TERM = (
    "import signal, sys, time\n"
    "def term(*_):\n"
    "    print('draining', flush=True)\n"
    "    sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, term)\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def start(
    tmp_path: Path,
    code: str,
    name: str = "child",
    *,
    env: dict[str, str] | None = None,
    append: bool = False,
    nice: int = 0,
) -> ServiceProcess:
    return ServiceProcess.start(
        name,
        python(code),
        env=service_env() if env is None else env,
        log_path=tmp_path / f"{name}.log",
        append=append,
        nice=nice,
    )


def started(tmp_path: Path, code: str, name: str = "child") -> ServiceProcess:
    """A child past its ``ready`` line, so its signal handlers are in place."""
    process = start(tmp_path, code, name)
    process.wait_ready(lambda: process.logged("ready"), within=10)
    return process


def test_environment_is_ours_then_the_endpoints_then_the_callers() -> None:
    env = service_env(
        ENDPOINTS,
        chunk_topic="t-1",
        devices_file=Path("/tmp/devices.json"),
        ticket_key="k" * 32,
        extra={"ROBOLAKE_S3_BUCKET": "the-tests-bucket"},
    )
    assert env["PATH"] == os.environ["PATH"]
    assert env["ROBOLAKE_KAFKA_BOOTSTRAP"] == "127.0.0.1:19092"
    assert env["ROBOLAKE_S3_SECRET_KEY"] == "secret"
    assert env["ROBOLAKE_CHUNK_TOPIC"] == "t-1"
    assert env["ROBOLAKE_DEVICES_FILE"] == "/tmp/devices.json"
    assert env["ROBOLAKE_TICKET_KEY"] == "k" * 32
    assert env["ROBOLAKE_S3_BUCKET"] == "the-tests-bucket"  # extra wins over the endpoints


def test_the_child_gets_the_environment_and_its_output_lands_in_the_log(tmp_path: Path) -> None:
    code = (
        "import os, sys\n"
        "print('topic', os.environ['ROBOLAKE_CHUNK_TOPIC'], os.environ['ROBOLAKE_S3_BUCKET'])\n"
        "print('to stderr', file=sys.stderr)\n"
    )
    process = start(tmp_path, code, env=service_env(ENDPOINTS, chunk_topic="t-2"))
    assert process.wait(10) == 0
    assert process.returncode == 0
    assert not process.running
    assert "topic t-2 from-endpoints" in process.log()
    assert "to stderr" in process.tail()


def test_append_keeps_what_earlier_runs_logged(tmp_path: Path) -> None:
    start(tmp_path, "print('first run')").wait(10)
    start(tmp_path, "print('second run')", append=True).wait(10)
    log = (tmp_path / "child.log").read_text()
    assert log.split() == ["first", "run", "second", "run"]
    start(tmp_path, "print('third run')").wait(10)
    assert (tmp_path / "child.log").read_text().strip() == "third run"


def test_nice_lowers_the_priority_of_the_service_itself(tmp_path: Path) -> None:
    process = start(tmp_path, "import os; print('nice', os.nice(0))", nice=5)
    assert process.wait(10) == 0
    assert f"nice {os.nice(0) + 5}" in process.log()


def test_ready_when_http_answers_200(tmp_path: Path) -> None:
    port = free_port()
    process = ServiceProcess.start(
        "http",
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        env=service_env(),
        log_path=tmp_path / "http.log",
    )
    probe = http_ok(f"http://127.0.0.1:{port}/")
    try:
        process.wait_ready(probe, within=20)
        assert probe() is True
        assert process.running
    finally:
        assert process.stop(grace=5) == -signal.SIGTERM
    with pytest.raises(urllib.error.URLError):  # nothing listens: the probe refuses
        probe()


async def test_ready_in_an_event_loop_on_a_log_line(tmp_path: Path) -> None:
    process = start(tmp_path, "import time; time.sleep(0.3); print('listening'); time.sleep(60)")
    try:
        await process.ready(lambda: process.logged("listening"), within=10)
    finally:
        assert await process.astop(grace=5) == -signal.SIGTERM


def test_a_child_that_dies_during_start_up_fails_at_once_with_its_log(tmp_path: Path) -> None:
    process = start(tmp_path, "import sys; print('cannot bind'); sys.exit(3)")
    began = time.monotonic()
    with pytest.raises(LaunchError, match=r"exited with 3[\s\S]*cannot bind"):
        process.wait_ready(lambda: False, within=30)
    assert time.monotonic() - began < 10  # not the whole readiness timeout


def test_not_ready_in_time_says_so_with_the_log(tmp_path: Path) -> None:
    process = start(tmp_path, "import time; print('still starting', flush=True); time.sleep(60)")
    try:
        process.wait_ready(lambda: process.logged("still starting"), within=10)
        with pytest.raises(LaunchError, match=r"not ready after 0 s[\s\S]*still starting"):
            process.wait_ready(lambda: False, within=0.3)
        assert process.running
    finally:
        process.stop(grace=5)


def test_stop_sends_sigterm_so_the_service_drains(tmp_path: Path) -> None:
    process = started(tmp_path, DRAINS_ON_TERM)
    assert process.stop(grace=10) == 0
    assert "draining" in process.log()


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    process = started(tmp_path, IGNORES_TERM)
    began = time.monotonic()
    assert process.stop(grace=0.5) == -signal.SIGKILL
    waited = time.monotonic() - began
    assert 0.5 <= waited < 30, waited  # the grace was given, then no more
    assert process.logged("ignoring SIGTERM")  # SIGTERM came first, SIGKILL only after it
    assert not process.running


def test_stopping_twice_is_safe_and_a_reaped_pid_is_never_signalled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    process = started(tmp_path, DRAINS_ON_TERM)
    assert process.stop(grace=10) == 0
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
    # Reaped: the kernel may already have given the PID to someone else.
    assert process.stop(grace=10) == 0
    process.signal(signal.SIGTERM)
    assert process.kill() == 0
    with process:
        pass
    assert sent == []


def test_stop_all_drains_every_process_and_kills_only_the_stubborn_one(tmp_path: Path) -> None:
    polite = started(tmp_path, DRAINS_ON_TERM, "polite")
    stubborn = started(tmp_path, IGNORES_TERM, "stubborn")
    stop_all([polite, stubborn], grace=1)
    assert polite.returncode == 0
    assert stubborn.returncode == -signal.SIGKILL
    stop_all([polite, stubborn], grace=1)  # again: nothing left to signal, nothing raised


def test_leaving_the_with_block_stops_the_service(tmp_path: Path) -> None:
    with started(tmp_path, DRAINS_ON_TERM) as process:
        assert process.running
    assert process.returncode == 0


def test_an_argv_that_cannot_run_is_a_launch_error(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="cannot start ghost"):
        ServiceProcess.start(
            "ghost", [str(tmp_path / "missing")], env=service_env(), log_path=tmp_path / "g.log"
        )


def test_a_timed_out_wait_leaves_the_service_running(tmp_path: Path) -> None:
    process = started(tmp_path, DRAINS_ON_TERM)
    with pytest.raises(subprocess.TimeoutExpired):
        process.wait(0.1)
    assert process.running
    assert process.stop(grace=10) == 0


BUSY_UNTIL_TERM = (
    "import signal, sys\n"
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
    "print('ready', flush=True)\n"
    "def spin():\n"
    "    while True:\n"
    "        sum(range(1000))\n"
    "spin()\n"
)


def test_a_profiled_service_leaves_a_flame_graph_and_its_stacks(tmp_path: Path) -> None:
    try:
        py_spy()
    except LaunchError:
        pytest.skip("py-spy is not installed")
    process = ServiceProcess.start(
        "busy",
        python(BUSY_UNTIL_TERM),
        env=service_env(),
        log_path=tmp_path / "busy.log",
    )
    process.wait_ready(lambda: process.logged("ready"), within=10)
    process.profile(tmp_path / "profile" / "busy")
    with pytest.raises(LaunchError, match="already being profiled"):
        process.profile(tmp_path / "profile" / "again")
    time.sleep(1.0)
    assert process.stop(grace=10) == 0
    assert not process.profilers
    profile = tmp_path / "profile"
    assert (profile / "busy.svg").read_text().startswith("<?xml")
    stacks = (profile / "busy.txt").read_text()
    assert "spin (<string>" in stacks, (profile / "busy.py-spy.log").read_text()
