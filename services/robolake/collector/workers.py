"""One collector command on every core: a master process and N workers sharing the port.

``robolake collector --workers N`` (N > 1) starts a master that serves nothing itself. It starts N
worker processes, each a whole single-process collector (``collector/service.py``) listening on
the same host and port with ``SO_REUSEPORT``, so the kernel spreads incoming connections over
them; and then it only supervises:

- SIGTERM or SIGINT is forwarded to every worker, each drains the way a single collector does
  (``/readyz`` 503, in-flight uploads finish and are acknowledged, the producer flushes), and the
  master exits once all of them have: 0 if every worker exited 0. A worker still running
  ``stop_grace`` seconds later is killed and the master exits non-zero.
- A worker that exits while nobody asked it to is restarted under the same index, after a
  backoff that doubles with each recent failure; more than ``max_restarts`` failures within
  ``window_seconds`` is a crash loop: the master stops the others and exits with an error
  instead of spinning.
- Workers die with the master (``PR_SET_PDEATHSIG``): a master killed with SIGKILL takes its
  workers with it, as a single process would die, and leaves nothing holding the port.

The master is lean: ``robolake collector`` parses its flags, checks the port, then replaces
itself (``execv``, so the PID the operator or orchestrator signals stays the same) with
``python -m robolake.collector.workers SPEC``, which imports little besides this module, instead
of keeping the memory of every import the full ``robolake`` command made. Workers are fresh
interpreters (fork + exec of the same ``robolake collector`` command with ``--workers 1
--reuse-port``), not forks of the master: each imports prometheus_client with
``$PROMETHEUS_MULTIPROC_DIR`` already set (``collector/metrics.py``), and no state of the
master's leaks into them. Nothing else is shared: upload tickets are signed, not stored
(``collector/tickets.py``), so any worker accepts any request of any upload.

The supervision is :class:`Master`, driven by :meth:`Master.step` with an injected clock and
process factory, so its policy is tested without processes or sleeping.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Final, Protocol

from robolake import logs
from robolake.collector.errors import CollectorError

log = logging.getLogger(__name__)

ENV_WORKER_INDEX: Final = "ROBOLAKE_COLLECTOR_WORKER_INDEX"
ENV_MASTER_PID: Final = "ROBOLAKE_COLLECTOR_MASTER_PID"
#: prometheus_client's own variable: where each worker's metric files live.
ENV_METRICS_DIR: Final = "PROMETHEUS_MULTIPROC_DIR"
_PR_SET_PDEATHSIG: Final = 1
#: A master's metrics directory is ``$TMPDIR/<prefix><master pid>-<random>``.
METRICS_DIR_PREFIX: Final = "robolake-collector-metrics-"


class CrashLoop(CollectorError):
    """Workers kept dying faster than the restart policy allows; the master gave up."""


@dataclass(frozen=True)
class WorkerRole:
    """What a worker process knows of its place: its index, its master, the metrics directory."""

    index: int
    master_pid: int
    metrics_dir: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> WorkerRole | None:
        """The role the master gave this process, or None when it was not started by one."""
        if ENV_WORKER_INDEX not in environ:
            return None
        try:
            return cls(
                index=int(environ[ENV_WORKER_INDEX]),
                master_pid=int(environ[ENV_MASTER_PID]),
                metrics_dir=Path(environ[ENV_METRICS_DIR]),
            )
        except (KeyError, ValueError) as exc:
            raise CollectorError(
                f"{ENV_WORKER_INDEX} is set but {ENV_MASTER_PID} or {ENV_METRICS_DIR} is "
                "missing or malformed; workers are started by `robolake collector --workers N`, "
                "not by hand"
            ) from exc

    def bind_to_master(self) -> None:
        """Die with the master: SIGKILL when it exits, and exit now if it already has."""
        if sys.platform == "linux":
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
                raise CollectorError(f"prctl(PR_SET_PDEATHSIG): {os.strerror(ctypes.get_errno())}")
        if os.getppid() != self.master_pid:  # the master died before prctl took effect
            raise CollectorError(f"collector master (pid {self.master_pid}) is gone; exiting")


class WorkerProcess(Protocol):
    """The part of ``subprocess.Popen`` the master uses."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...

    def wait(self, timeout: float | None = None) -> int: ...


#: Starts the worker with the given index.
ProcessFactory = Callable[[int], WorkerProcess]


@dataclass(frozen=True)
class RestartPolicy:
    """When a worker that died is started again, and when the master gives up."""

    #: Unexpected exits tolerated within ``window_seconds`` (over all workers); one more is a
    #: crash loop.
    max_restarts: int = 5
    window_seconds: float = 60.0
    #: Delay before the first restart; it doubles with each failure in the window, up to
    #: ``backoff_max``.
    backoff_initial: float = 0.5
    backoff_max: float = 10.0

    def backoff(self, recent_failures: int) -> float:
        return float(
            min(self.backoff_max, self.backoff_initial * 2.0 ** max(0, recent_failures - 1))
        )


def describe_exit(code: int) -> str:
    """``exit 1`` or ``signal SIGKILL``, from a ``Popen.returncode``."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"exit {code}"


@dataclass
class _Slot:
    index: int
    process: WorkerProcess | None = None
    restart_at: float | None = None
    last_exit: int | None = None


class Master:
    """Supervises ``workers`` worker processes; see the module's docstring for the policy.

    Call :meth:`start`, then :meth:`step` until it returns False (:meth:`run` does, with a real
    sleep); :meth:`request_stop` may be called at any time, also from a signal handler (it only
    records the signal; the next step forwards it). ``on_exit`` is told the PID of every worker
    that exited (the metrics bookkeeping of a dead process).
    """

    def __init__(
        self,
        workers: int,
        factory: ProcessFactory,
        *,
        policy: RestartPolicy | None = None,
        stop_grace: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        on_exit: Callable[[int], None] = lambda pid: None,
    ) -> None:
        if workers < 1:
            raise ValueError("a master needs at least one worker")
        self.policy = policy or RestartPolicy()
        self.stop_grace = stop_grace
        self._factory = factory
        self._clock = clock
        self._on_exit = on_exit
        self._slots = [_Slot(index) for index in range(workers)]
        self._failures: deque[float] = deque()
        self._pending: list[int] = []
        self._forwarded: set[int] = set()
        self._stopping = False
        self._stop_deadline: float | None = None
        self._killed = False
        self.crash_loop: str | None = None
        #: How many times a worker was started again after dying (for logs and tests).
        self.restarts = 0

    @property
    def pids(self) -> list[int]:
        """PIDs of the workers running now."""
        return [s.process.pid for s in self._slots if s.process is not None]

    @property
    def stopping(self) -> bool:
        return self._stopping

    def start(self) -> None:
        for slot in self._slots:
            self._spawn(slot)

    def request_stop(self, sig: int = signal.SIGTERM) -> None:
        """Record ``sig`` to forward to every worker at the next step; safe in a signal handler."""
        self._pending.append(sig)

    def _spawn(self, slot: _Slot) -> None:
        slot.restart_at = None
        slot.process = self._factory(slot.index)
        log.info("collector worker started: worker=%d pid=%d", slot.index, slot.process.pid)

    def _forward(self, sig: int) -> None:
        self._forwarded.add(sig)
        if not self._stopping:
            self._stopping = True
            self._stop_deadline = self._clock() + self.stop_grace
        for slot in self._slots:
            slot.restart_at = None
            if slot.process is not None:
                log.info(
                    "forwarding %s to collector worker: worker=%d pid=%d",
                    signal.Signals(sig).name,
                    slot.index,
                    slot.process.pid,
                )
                slot.process.send_signal(sig)

    def _reap(self, slot: _Slot, now: float) -> None:
        process = slot.process
        if process is None:
            return
        code = process.poll()
        if code is None:
            return
        slot.process = None
        slot.last_exit = code
        self._on_exit(process.pid)
        if self._stopping:
            log.info(
                "collector worker stopped: worker=%d pid=%d status=%r",
                slot.index,
                process.pid,
                describe_exit(code),
            )
            return
        self._failures.append(now)
        while self._failures and self._failures[0] < now - self.policy.window_seconds:
            self._failures.popleft()
        recent = len(self._failures)
        if recent > self.policy.max_restarts:
            self.crash_loop = (
                f"collector worker {slot.index} (pid {process.pid}) exited with "
                f"{describe_exit(code)}: {recent} unexpected worker exits within "
                f"{self.policy.window_seconds:.0f} s, more than the {self.policy.max_restarts} "
                "restarts allowed, so the collector stops instead of restarting it again; "
                "the workers' own errors are in the log lines above"
            )
            log.error("collector crash loop: %s", self.crash_loop)
            self._forward(signal.SIGTERM)
            return
        delay = self.policy.backoff(recent)
        slot.restart_at = now + delay
        log.warning(
            "collector worker exited unexpectedly: worker=%d pid=%d status=%r "
            "failures_in_window=%d max_restarts=%d restart_in_s=%.1f",
            slot.index,
            process.pid,
            describe_exit(code),
            recent,
            self.policy.max_restarts,
            delay,
        )

    def step(self) -> bool:
        """One round: forward pending signals, reap exited workers, restart those due, kill
        stragglers after the grace; False once every worker is gone after a stop."""
        while self._pending:
            self._forward(self._pending.pop(0))
        now = self._clock()
        for slot in self._slots:
            self._reap(slot, now)
        if not self._stopping:
            for slot in self._slots:
                if slot.process is None and slot.restart_at is not None and now >= slot.restart_at:
                    self.restarts += 1
                    self._spawn(slot)
            return True
        if all(slot.process is None for slot in self._slots):
            return False
        if self._stop_deadline is not None and now >= self._stop_deadline and not self._killed:
            self._killed = True
            for slot in self._slots:
                if slot.process is not None:
                    log.error(
                        "collector worker still running %.0f s after the stop; killing it: "
                        "worker=%d pid=%d",
                        self.stop_grace,
                        slot.index,
                        slot.process.pid,
                    )
                    slot.process.kill()
        return True

    def abandon(self) -> None:
        """Kill and reap every worker still running (the master is failing itself)."""
        for slot in self._slots:
            if slot.process is not None:
                slot.process.kill()
                slot.process.wait()
                self._on_exit(slot.process.pid)
                slot.process = None

    def exit_code(self) -> int:
        """0 when every worker ended cleanly after a stop; 1 otherwise.

        Clean is exit 0, or death by the very signal forwarded to it: a worker still starting
        (before its handlers are installed, so before it binds the port) or already done
        (after its drain, handlers removed) dies of it with nothing in flight. SIGINT before
        the handler is Python's KeyboardInterrupt, which ``robolake`` turns into exit 130.
        """
        clean = {0, *(-sig for sig in self._forwarded)}
        if signal.SIGINT in self._forwarded:
            clean.add(130)
        ok = all(slot.last_exit in clean for slot in self._slots)
        return 0 if ok and not self._killed and self.crash_loop is None else 1

    def run(self, *, interval: float = 0.1, sleep: Callable[[float], None] = time.sleep) -> int:
        """:meth:`start`, then :meth:`step` every ``interval`` s until done; the exit code.
        Raises :class:`CrashLoop` if it stopped because of one."""
        self.start()
        while self.step():
            sleep(interval)
        if self.crash_loop is not None:
            raise CrashLoop(self.crash_loop)
        return self.exit_code()


def check_port_free(host: str, port: int) -> None:
    """Fail clearly if something already listens on ``host:port``.

    Workers bind with ``SO_REUSEPORT``, which would let them silently share the port with
    another collector started by mistake that also sets it; a probe without the option fails
    instead, as a single process does. (Best effort: two masters started in the same second
    can both pass it.)
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CollectorError(f"cannot resolve --host {host}: {exc}") from exc
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    continue  # e.g. no IPv6 here: the workers will report it if it matters
                raise CollectorError(
                    f"cannot listen on {host}:{port} ({exc.strerror}); is another process "
                    "(another collector?) on that port? Stop it or pick another --port; "
                    "to share a port with other collectors on purpose, pass --reuse-port"
                ) from exc


def remove_orphaned_metrics_dirs(parent: Path) -> list[Path]:
    """Remove the metrics directories of masters that are gone; those removed.

    A master removes its own directory on the way out, but one killed (SIGKILL, OOM) cannot.
    Each directory is named for its master's PID, so the next master on the host removes those
    whose master no longer runs. A live PID keeps its directory even if it was reused by
    another process: only disk space is at stake, never a live master's files.
    """
    removed = []
    for path in parent.glob(f"{METRICS_DIR_PREFIX}*-*"):
        pid_text = path.name.removeprefix(METRICS_DIR_PREFIX).split("-", 1)[0]
        if not pid_text.isdigit() or not path.is_dir() or path.stat().st_uid != os.getuid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
            log.info("removed the metrics directory of a collector master that is gone: %s", path)
        except PermissionError:
            continue  # alive, someone else's
    return removed


def popen_factory(argv: Sequence[str], env: Mapping[str, str]) -> ProcessFactory:
    """Workers as child processes running ``argv``, with ``env`` and their index; their output
    goes where the master's goes."""

    def start(index: int) -> WorkerProcess:
        try:
            return subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                env={**env, ENV_WORKER_INDEX: str(index)},
            )
        except OSError as exc:
            raise CollectorError(f"cannot start a collector worker ({argv[0]}): {exc}") from exc

    return start


def run_master(
    workers: int,
    argv: Sequence[str],
    *,
    host: str,
    port: int,
    stop_grace: float,
    policy: RestartPolicy | None = None,
) -> int:
    """Run ``workers`` copies of ``argv`` under a :class:`Master` until SIGTERM/SIGINT; the exit
    code. The workers' metrics directory is created here and removed on the way out."""
    from prometheus_client.multiprocess import mark_process_dead

    parent = Path(tempfile.gettempdir())
    remove_orphaned_metrics_dirs(parent)
    metrics_dir = Path(tempfile.mkdtemp(prefix=f"{METRICS_DIR_PREFIX}{os.getpid()}-", dir=parent))
    env = {**os.environ, ENV_MASTER_PID: str(os.getpid()), ENV_METRICS_DIR: str(metrics_dir)}
    master = Master(
        workers,
        popen_factory(argv, env),
        policy=policy,
        stop_grace=stop_grace,
        on_exit=lambda pid: mark_process_dead(pid, str(metrics_dir)),  # type: ignore[no-untyped-call]
    )

    def on_signal(sig: int, _: FrameType | None) -> None:
        master.request_stop(sig)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    log.info(
        "collector master pid=%d: %d workers on %s:%d with SO_REUSEPORT, metrics merged from %s",
        os.getpid(),
        workers,
        host,
        port,
        metrics_dir,
    )
    try:
        code = master.run()
    finally:
        # Whatever happened, no worker outlives this function (PDEATHSIG covers a hard death).
        master.abandon()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        shutil.rmtree(metrics_dir, ignore_errors=True)
    log.info("collector master stopped: status=%d restarts=%d", code, master.restarts)
    return code


@dataclass(frozen=True)
class MasterSpec:
    """Everything the exec'd master needs, passed as one JSON argument."""

    workers: int
    argv: list[str]
    host: str
    port: int
    stop_grace: float
    log_level: str = "INFO"
    log_format: str = "text"

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MasterSpec:
        return cls(**json.loads(text))


def exec_master(spec: MasterSpec) -> None:
    """Replace this process with the lean master running ``spec``; does not return.

    Only ``robolake collector`` calls it, as its last act: the process image is gone afterwards,
    so nothing embedding :func:`robolake.cli.main` may call it in-process.
    """
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    command = [sys.executable, "-m", "robolake.collector.workers", spec.to_json()]
    os.execv(sys.executable, command)  # noqa: S606 - our own interpreter, no shell


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m robolake.collector.workers SPEC``: the master, after ``robolake collector``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m robolake.collector.workers SPEC (run by robolake collector)")
        return 2
    spec = MasterSpec.from_json(args[0])
    logs.configure(spec.log_level, "json" if spec.log_format == "json" else "text")
    try:
        return run_master(
            spec.workers,
            spec.argv,
            host=spec.host,
            port=spec.port,
            stop_grace=spec.stop_grace,
        )
    except CollectorError as exc:
        print(f"robolake: error: {logs.escape(str(exc))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    # This module again under its own name, so its records are robolake.collector.workers's.
    from robolake.collector import workers

    sys.exit(workers.main())
