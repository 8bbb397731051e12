"""robolake's own services as child processes: the one way demo, bench and tests start them.

Each caller used to build its own environment and ``Popen`` and each stopped its children a
little differently (one waited forever for a child that ignored SIGTERM, one killed without
draining). Here a service is started with the stack's endpoints in its environment, its output in
a log file the error messages quote, and it is stopped the way production stops it: SIGTERM so it
drains, SIGKILL only after a timeout.

Processes are signalled through the ``Popen`` that started them, and only while it has not
reaped them: until then the kernel cannot give the PID to another process, so nothing here can
signal a process it did not start. That is why there is no stop by name, and why these children
are not detached the way :mod:`robolake.stack.process` detaches the stack (the stack outlives the
command that started it; a service started here never outlives its owner).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from robolake.collector.settings import ENV_CHUNK_TOPIC, ENV_TICKET_KEY
from robolake.devices.registry import ENV_DEVICES_FILE
from robolake.endpoints import Endpoints
from robolake.errors import RobolakeError
from robolake.stack.process import tail

log = logging.getLogger(__name__)

#: Whether a service is ready; exceptions count as "not yet" (a port not bound refuses).
Probe = Callable[[], bool]

#: How long a service gets to drain after SIGTERM before it is killed: the collector waits for
#: in-flight uploads and the writer flushes its buffers, both bounded well below this.
STOP_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 60.0
#: Samples per second of a profiled service (``py-spy record --rate``).
PROFILE_RATE = 100
#: What one profile writes, by py-spy ``--format``: a flame graph, and the collapsed stacks
#: (``frame;frame;... count`` per line) that tables of self time are computed from.
PROFILE_OUTPUTS = {"flamegraph": ".svg", "raw": ".txt"}
#: py-spy writes its files once the service has exited; a long profile takes seconds to render.
PROFILE_WRITE_S = 60.0


class LaunchError(RobolakeError):
    """A service exited or never became ready; the message carries the end of its log."""


def robolake_argv(*args: str) -> list[str]:
    """``robolake ARGS`` with this interpreter, so a child runs the same code and venv."""
    return [sys.executable, "-m", "robolake", *args]


def service_env(
    endpoints: Endpoints | None = None,
    *,
    chunk_topic: str | None = None,
    devices_file: Path | None = None,
    ticket_key: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a service: ours (PATH, the venv), then where the stack is, then the
    caller's own topic, registry and key, then ``extra``: later wins, so a test's private topic
    and bucket override whatever the developer's shell exports."""
    env = dict(os.environ)
    if endpoints is not None:
        env.update(endpoints.to_env())
    if chunk_topic is not None:
        env[ENV_CHUNK_TOPIC] = chunk_topic
    if devices_file is not None:
        env[ENV_DEVICES_FILE] = str(devices_file)
    if ticket_key is not None:
        env[ENV_TICKET_KEY] = ticket_key
    if extra:
        env.update(extra)
    return env


def http_ok(url: str, timeout: float = 2.0) -> Probe:
    """A probe that is true once ``url`` answers 200 (``/readyz``, ``/metrics``)."""

    def probe() -> bool:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
            return bool(response.status == 200)

    return probe


def py_spy() -> str:
    """The py-spy executable: the one beside this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    if beside.is_file():
        return str(beside)
    found = shutil.which("py-spy")
    if found is None:
        raise LaunchError("py-spy is not installed; it comes with the dev extra (make setup)")
    return found


def start_profilers(pid: int, prefix: Path) -> list[subprocess.Popen[bytes]]:
    """Sample ``pid`` and its children with py-spy until it exits, into ``prefix`` + each
    suffix of :data:`PROFILE_OUTPUTS`, py-spy's own messages into ``prefix.py-spy.log``.

    One sampler per output, both ``--nonblocking``: they read the service's memory without
    pausing it (one process at a time could pause it), so its latency stays its own. The
    samplers are this process's children, not the service's: its CPU figures exclude them."""
    binary = py_spy()
    prefix.parent.mkdir(parents=True, exist_ok=True)
    samplers = []
    with prefix.with_name(f"{prefix.name}.py-spy.log").open("wb") as out:
        for fmt, suffix in PROFILE_OUTPUTS.items():
            command = [
                binary, "record", "--pid", str(pid), "--subprocesses", "--nonblocking",
                "--rate", str(PROFILE_RATE), "--format", fmt,
                "--output", str(prefix.with_name(prefix.name + suffix)),
            ]  # fmt: skip
            samplers.append(
                subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
            )
    log.info("profiling pid %d into %s.{svg,txt}", pid, prefix)
    return samplers


class ServiceProcess:
    """A service this process started and owns until it has stopped it."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.name = name
        self.proc = proc
        self.log_path = log_path
        self.profilers: list[subprocess.Popen[bytes]] = []

    @classmethod
    def start(
        cls,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        append: bool = False,
        nice: int = 0,
    ) -> Self:
        """Start ``argv`` with stdout and stderr in ``log_path``; ``append`` keeps what earlier
        runs logged there (restart tests count lines across runs). ``nice`` lowers its CPU
        priority through ``nice(1)``, which execs, so the PID is still the service's."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        command = ["nice", "-n", str(nice), *argv] if nice else list(argv)
        with log_path.open("ab" if append else "wb") as out:
            try:
                proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=dict(env),
                )
            except OSError as exc:
                raise LaunchError(f"cannot start {name} ({command[0]}): {exc}") from exc
        log.info("started %s as pid %d (log %s)", name, proc.pid, log_path)
        return cls(name, proc, log_path)

    def __repr__(self) -> str:
        return f"ServiceProcess({self.name!r}, pid={self.pid}, returncode={self.returncode})"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once it has exited (negative: the signal that ended it), else None."""
        return self.proc.poll()

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def logged(self, text: str) -> bool:
        """Whether the log contains ``text``: readiness for a process whose HTTP port it shares
        with others (``--reuse-port``), where ``/readyz`` may answer for a sibling."""
        return text in self.log()

    def check(self) -> None:
        """Raise :class:`LaunchError` with the log's end if the service has exited."""
        if self.proc.poll() is not None:
            raise LaunchError(
                f"{self.name} (pid {self.pid}) exited with {self.proc.returncode}; "
                f"last lines of {self.log_path}:\n{self.tail()}"
            )

    def _probe(self, probe: Probe) -> bool:
        try:
            return probe()
        except Exception as exc:  # a refused connection, a 503, a half-written log line
            log.debug("%s not ready: %s", self.name, exc)
            return False

    def _not_ready(self, within: float) -> LaunchError:
        return LaunchError(
            f"{self.name} (pid {self.pid}) not ready after {within:.0f} s; "
            f"last lines of {self.log_path}:\n{self.tail()}"
        )

    def wait_ready(
        self, probe: Probe, *, within: float = READY_TIMEOUT_S, interval: float = 0.2
    ) -> None:
        """Poll ``probe`` until true; fail at once, with the log, if the service exits."""
        deadline = time.monotonic() + within
        while True:
            self.check()
            if self._probe(probe):
                return
            if time.monotonic() >= deadline:
                raise self._not_ready(within)
            time.sleep(interval)

    async def ready(
        self, probe: Probe, *, within: float = READY_TIMEOUT_S, interval: float = 0.2
    ) -> None:
        """:meth:`wait_ready` for an event loop: each probe runs in a thread, so a slow HTTP
        answer does not stall the loop, and cancelling stops the polling at the next step."""
        deadline = time.monotonic() + within
        while True:
            self.check()
            if await asyncio.to_thread(self._probe, probe):
                return
            if time.monotonic() >= deadline:
                raise self._not_ready(within)
            await asyncio.sleep(interval)

    def signal(self, sig: int) -> None:
        """Send ``sig`` if the service has not been reaped (after that its PID may be reused)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float | None = STOP_TIMEOUT_S) -> int:
        """Its exit status; raises ``subprocess.TimeoutExpired`` if it is still running."""
        return self.proc.wait(timeout=timeout)

    def kill(self) -> int:
        """SIGKILL and reap: for a test that means to crash it, or a stop that timed out."""
        self.signal(signal.SIGKILL)
        return self.proc.wait()

    def profile(self, prefix: Path) -> None:
        """Sample the service with py-spy from now until it stops, into ``prefix.svg`` and
        ``prefix.txt`` (:func:`start_profilers`): called once the load begins, so start-up
        (imports, connecting) is not in the profile."""
        if self.profilers:
            raise LaunchError(f"{self.name} (pid {self.pid}) is already being profiled")
        self.check()
        self.profilers = start_profilers(self.pid, prefix)

    def end_profile(self) -> None:
        """Once the service has exited, wait for its samplers to write their files (they stop
        by themselves when it exits); one still running after :data:`PROFILE_WRITE_S` is
        interrupted (py-spy writes what it has on SIGINT), then killed."""
        for sampler in self.profilers:
            try:
                sampler.wait(timeout=PROFILE_WRITE_S)
            except subprocess.TimeoutExpired:
                sampler.send_signal(signal.SIGINT)
                try:
                    sampler.wait(timeout=PROFILE_WRITE_S)
                except subprocess.TimeoutExpired:
                    sampler.kill()
                    sampler.wait()
            if sampler.returncode != 0:
                log.warning(
                    "py-spy for %s exited with %s; see its .py-spy.log",
                    self.name,
                    sampler.returncode,
                )
        self.profilers = []

    def stop(self, grace: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM so it drains, SIGKILL after ``grace`` s; its exit status. Safe to call
        again (it returns the same status)."""
        stop_all([self], grace=grace)
        return self.proc.wait()

    async def astop(self, grace: float = STOP_TIMEOUT_S) -> int:
        """:meth:`stop` without blocking the event loop."""
        return await asyncio.to_thread(self.stop, grace)

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def stop_all(processes: Iterable[ServiceProcess], *, grace: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM every process at once so they drain in parallel, wait up to ``grace`` s in
    all, then SIGKILL whichever is still running. Never raises for a slow process, and a
    process already stopped is left alone, so it is safe in ``finally`` blocks and twice."""
    services = list(processes)
    for service in services:
        service.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for service in services:
        try:
            service.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning(
                "%s (pid %d) ignored SIGTERM for %.0f s; killing it",
                service.name,
                service.pid,
                grace,
            )
            service.kill()
    for service in services:
        service.end_profile()
