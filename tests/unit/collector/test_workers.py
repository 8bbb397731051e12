"""The collector master's supervision policy, with fake processes and a fake clock.

Forwarding SIGTERM to every worker and waiting for all of them, restarting a worker that died
(with doubling backoff), giving up on a crash loop, killing stragglers after the grace.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from robolake.collector.cli import add_parsers, worker_argv
from robolake.collector.errors import CollectorError
from robolake.collector.settings import ENV_WORKERS, CollectorSettings, available_cores
from robolake.collector.workers import (
    ENV_MASTER_PID,
    ENV_METRICS_DIR,
    ENV_WORKER_INDEX,
    CrashLoop,
    Master,
    MasterSpec,
    RestartPolicy,
    WorkerRole,
    check_port_free,
    describe_exit,
    main,
    remove_orphaned_metrics_dirs,
    run_master,
)


class FakeProcess:
    """A worker that runs until it is told to stop, or until a test ends it."""

    def __init__(self, pid: int, index: int) -> None:
        self.pid = pid
        self.index = index
        self.returncode: int | None = None
        self.signals: list[int] = []
        #: What it does on SIGTERM: exit with this status (None: ignore the signal).
        self.on_term: int | None = 0

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)
        if self.returncode is None and self.on_term is not None:
            self.returncode = self.on_term

    def kill(self) -> None:
        if self.returncode is None:
            self.returncode = -signal.SIGKILL

    def wait(self, timeout: float | None = None) -> int:
        assert self.returncode is not None
        return self.returncode


class Factory:
    def __init__(self) -> None:
        self.started: list[FakeProcess] = []

    def __call__(self, index: int) -> FakeProcess:
        process = FakeProcess(1000 + len(self.started), index)
        self.started.append(process)
        return process

    def live(self) -> list[FakeProcess]:
        return [p for p in self.started if p.returncode is None]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def factory() -> Factory:
    return Factory()


def master(factory: Factory, clock: Clock, workers: int = 2, **kwargs: object) -> Master:
    dead: list[int] = []
    m = Master(workers, factory, clock=clock, on_exit=dead.append, **kwargs)  # type: ignore[arg-type]
    m.dead = dead  # type: ignore[attr-defined]
    m.start()
    return m


def test_it_starts_one_process_per_worker_with_its_index(factory: Factory, clock: Clock) -> None:
    m = master(factory, clock, workers=3)
    assert [p.index for p in factory.started] == [0, 1, 2]
    assert m.step() is True
    assert sorted(m.pids) == [1000, 1001, 1002]


def test_sigterm_is_forwarded_to_every_worker_and_it_waits_for_all(
    factory: Factory, clock: Clock
) -> None:
    m = master(factory, clock)
    slow = factory.started[1]
    slow.on_term = None  # still draining when the signal arrives
    m.request_stop(signal.SIGTERM)
    assert m.step() is True, "one worker is still draining: the master must wait"
    assert [p.signals for p in factory.started] == [[signal.SIGTERM], [signal.SIGTERM]]
    clock.now += 20
    assert m.step() is True
    slow.returncode = 0  # drained
    assert m.step() is False
    assert m.exit_code() == 0
    assert len(factory.started) == 2, "nothing is restarted during a stop"
    assert sorted(m.dead) == [1000, 1001]  # type: ignore[attr-defined]


def test_sigint_is_forwarded_as_sigint(factory: Factory, clock: Clock) -> None:
    m = master(factory, clock)
    m.request_stop(signal.SIGINT)
    assert m.step() is False
    assert all(p.signals == [signal.SIGINT] for p in factory.started)


def test_a_worker_that_dies_is_restarted_after_a_backoff(factory: Factory, clock: Clock) -> None:
    m = master(factory, clock, policy=RestartPolicy(backoff_initial=0.5, backoff_max=10))
    factory.started[0].returncode = -signal.SIGKILL
    assert m.step() is True
    assert len(factory.live()) == 1, "not restarted before the backoff"
    clock.now += 0.4
    m.step()
    assert len(factory.live()) == 1
    clock.now += 0.2
    m.step()
    assert len(factory.started) == 3
    assert factory.started[2].index == 0, "the replacement takes the dead worker's index"
    assert m.restarts == 1
    assert m.dead == [1000]  # type: ignore[attr-defined]


def test_the_backoff_doubles_with_each_recent_failure_up_to_its_cap() -> None:
    policy = RestartPolicy(backoff_initial=0.5, backoff_max=3.0)
    assert [policy.backoff(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_a_crash_loop_stops_the_master_with_an_error(factory: Factory, clock: Clock) -> None:
    policy = RestartPolicy(max_restarts=3, window_seconds=60, backoff_initial=1, backoff_max=1)
    m = master(factory, clock, policy=policy)
    steps = 0
    while m.step():
        for process in factory.live():
            if process.index == 0:
                process.returncode = 1  # worker 0 dies at once, every time
        clock.now += 1.5
        steps += 1
        assert steps < 100, "the master kept restarting a crash-looping worker"
    assert m.restarts == 3
    assert m.crash_loop is not None
    assert "4 unexpected worker exits within 60 s" in m.crash_loop
    assert factory.started[1].signals == [signal.SIGTERM], "the healthy worker is drained"
    assert m.exit_code() == 1


def test_run_raises_crash_loop(factory: Factory, clock: Clock) -> None:
    m = Master(1, factory, clock=clock, policy=RestartPolicy(max_restarts=0))

    def sleep(_: float) -> None:
        for process in factory.live():
            process.returncode = 2

    with pytest.raises(CrashLoop, match="exit 2"):
        m.run(sleep=sleep)


def test_failures_outside_the_window_are_forgotten(factory: Factory, clock: Clock) -> None:
    policy = RestartPolicy(max_restarts=1, window_seconds=10, backoff_initial=0.1)
    m = master(factory, clock, workers=1, policy=policy)
    for _ in range(5):  # one death every 11 s: never two within the window
        factory.live()[0].returncode = 1
        m.step()
        clock.now += 11
        assert m.step() is True
    assert m.crash_loop is None
    assert m.restarts == 5


def test_a_worker_exiting_cleanly_unasked_is_still_restarted(
    factory: Factory, clock: Clock
) -> None:
    m = master(factory, clock, workers=1)
    factory.started[0].returncode = 0  # someone signalled the worker, not the master
    m.step()
    clock.now += 1
    m.step()
    assert len(factory.live()) == 1


def test_a_worker_that_ignores_the_stop_is_killed_after_the_grace(
    factory: Factory, clock: Clock
) -> None:
    m = master(factory, clock, stop_grace=30.0)
    stuck = factory.started[0]
    stuck.on_term = None
    m.request_stop()
    assert m.step() is True
    clock.now += 29
    assert m.step() is True
    assert stuck.returncode is None
    clock.now += 2
    m.step()
    assert stuck.returncode == -signal.SIGKILL
    assert m.step() is False
    assert m.exit_code() == 1


def test_a_worker_failing_its_drain_makes_the_exit_code_non_zero(
    factory: Factory, clock: Clock
) -> None:
    m = master(factory, clock)
    factory.started[1].on_term = 1
    m.request_stop()
    assert m.step() is False
    assert m.exit_code() == 1


def test_a_worker_ended_by_the_forwarded_signal_itself_stopped_cleanly(
    factory: Factory, clock: Clock
) -> None:
    m = master(factory, clock)
    factory.started[0].on_term = -signal.SIGTERM  # still starting: no handler installed yet
    m.request_stop(signal.SIGTERM)
    assert m.step() is False
    assert m.exit_code() == 0


def test_a_worker_killed_by_another_signal_during_the_stop_is_not_clean(
    factory: Factory, clock: Clock
) -> None:
    m = master(factory, clock)
    factory.started[0].on_term = -signal.SIGSEGV
    m.request_stop(signal.SIGTERM)
    assert m.step() is False
    assert m.exit_code() == 1


def test_abandon_kills_and_reaps_every_worker(factory: Factory, clock: Clock) -> None:
    m = master(factory, clock)
    m.abandon()
    assert all(p.returncode == -signal.SIGKILL for p in factory.started)
    assert m.pids == []


def test_exit_statuses_read_as_words() -> None:
    assert describe_exit(3) == "exit 3"
    assert describe_exit(-signal.SIGKILL) == "signal SIGKILL"


def test_run_master_with_real_processes_gives_up_on_a_crash_loop_and_cleans_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    argv = [sys.executable, "-c", "raise SystemExit(3)"]
    policy = RestartPolicy(max_restarts=2, backoff_initial=0.01, backoff_max=0.01)
    with caplog.at_level("INFO"), pytest.raises(CrashLoop, match="exit 3"):
        run_master(2, argv, host="127.0.0.1", port=1, stop_grace=5, policy=policy)
    started = [r.getMessage() for r in caplog.records if "metrics merged from" in r.getMessage()]
    assert len(started) == 1
    metrics_dir = Path(started[0].rsplit(" ", 1)[1])
    assert metrics_dir.name.startswith("robolake-collector-metrics-")
    assert not metrics_dir.exists(), "the metrics directory was left behind"


def test_metrics_dirs_of_masters_that_are_gone_are_removed(tmp_path: Path) -> None:
    dead_pid = _a_dead_pid()
    mine = tmp_path / f"robolake-collector-metrics-{os.getpid()}-abc"
    orphan = tmp_path / f"robolake-collector-metrics-{dead_pid}-def"
    other = tmp_path / "robolake-collector-metrics-notapid"
    for path in (mine, orphan, other):
        path.mkdir()
        (path / "counter_1.db").write_bytes(b"x")
    assert remove_orphaned_metrics_dirs(tmp_path) == [orphan]
    assert mine.exists()
    assert other.exists()
    assert not orphan.exists()


def _a_dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its PID names no process (until the kernel reuses it)
    try:
        os.kill(child.pid, 0)
    except ProcessLookupError:
        return child.pid
    pytest.skip("the PID was reused at once")


def test_the_master_spec_survives_its_trip_through_exec() -> None:
    spec = MasterSpec(workers=3, argv=["python", "-m", "robolake"], host="::", port=80,
                      stop_grace=75.0, log_level="DEBUG", log_format="json")  # fmt: skip
    assert MasterSpec.from_json(spec.to_json()) == spec


def test_the_master_entry_point_wants_one_spec(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "robolake collector" in capsys.readouterr().out


# -- the worker's side ---------------------------------------------------------------------


def test_a_process_without_the_variables_is_not_a_worker() -> None:
    assert WorkerRole.from_env({}) is None


def test_a_worker_reads_its_role_from_the_environment(tmp_path: Path) -> None:
    role = WorkerRole.from_env(
        {ENV_WORKER_INDEX: "1", ENV_MASTER_PID: "42", ENV_METRICS_DIR: str(tmp_path)}
    )
    assert role == WorkerRole(index=1, master_pid=42, metrics_dir=tmp_path)


def test_a_half_set_role_is_a_clear_error() -> None:
    with pytest.raises(CollectorError, match=ENV_MASTER_PID):
        WorkerRole.from_env({ENV_WORKER_INDEX: "1"})


def test_a_busy_port_is_refused_before_any_worker_starts() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(CollectorError, match="another collector"):
            check_port_free("127.0.0.1", port)
    check_port_free("127.0.0.1", port)  # free again


# -- flags ---------------------------------------------------------------------------------


def _parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    root = argparse.ArgumentParser()
    root.add_argument("--log-level", default="INFO")
    root.add_argument("--log-format", default="text")
    subparsers = root.add_subparsers()
    add_parsers(subparsers)
    return root, subparsers.choices["collector"]


@pytest.fixture
def _collector_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBOLAKE_TICKET_KEY", "k" * 32)
    monkeypatch.delenv(ENV_WORKERS, raising=False)
    monkeypatch.delenv("ROBOLAKE_COLLECTOR_REUSE_PORT", raising=False)


@pytest.mark.usefixtures("_collector_env")
def test_workers_default_to_the_available_cores() -> None:
    root, _ = _parser()
    assert CollectorSettings.from_args(root.parse_args(["collector"])).workers == available_cores()
    assert CollectorSettings().workers == 1, "a settings object alone is one process"


@pytest.mark.usefixtures("_collector_env")
def test_workers_from_the_environment_and_the_flag_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = _parser()
    monkeypatch.setenv(ENV_WORKERS, "3")
    assert CollectorSettings.from_args(root.parse_args(["collector"])).workers == 3
    args = root.parse_args(["collector", "--workers", "1"])
    assert CollectorSettings.from_args(args).workers == 1


@pytest.mark.usefixtures("_collector_env")
@pytest.mark.parametrize(("flag", "env"), [(["--workers", "0"], None), ([], "many"), ([], "-1")])
def test_bad_worker_counts_are_clear_errors(
    monkeypatch: pytest.MonkeyPatch, flag: list[str], env: str | None
) -> None:
    root, _ = _parser()
    if env is not None:
        monkeypatch.setenv(ENV_WORKERS, env)
    with pytest.raises(CollectorError, match=">= 1"):
        CollectorSettings.from_args(root.parse_args(["collector", *flag]))


@pytest.mark.usefixtures("_collector_env")
def test_a_worker_runs_the_same_command_as_one_process_on_the_shared_port() -> None:
    root, collector = _parser()
    argv = [
        "collector", "--port", "9999", "--device-rate", "0", "--drain-seconds", "3.5",
        "--no-reuse-port", "--workers", "4", "--event-loop", "asyncio", "--tls-cert", "/c.pem",
        "--tls-key", "/k.pem",
    ]  # fmt: skip
    args = root.parse_args(argv)
    command = worker_argv(collector, args)
    assert command[1:3] == ["-m", "robolake"]
    again = root.parse_args(command[3:])
    theirs, ours = CollectorSettings.from_args(again), CollectorSettings.from_args(args)
    assert theirs.workers == 1
    assert theirs.reuse_port is True
    assert ours.workers == 4
    assert (theirs.port, theirs.device_rate_bytes, theirs.drain_seconds) == (9999, 0.0, 3.5)
    assert (theirs.tls_cert, theirs.tls_key) == (ours.tls_cert, ours.tls_key)
    assert again.event_loop == "asyncio"
    assert again.log_level == args.log_level
