"""Child processes of the stack: started in their own session, stopped by PID, never by name.

A PID alone is not an identity (PIDs are reused), so each record also keeps the process start
time from ``/proc``; :func:`is_running` and :func:`stop` check both before touching a process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from robolake.stack.errors import StackError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessRecord:
    """What the state file remembers of one started process."""

    pid: int
    start_ticks: int
    log_path: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcessRecord:
        return cls(
            pid=int(data["pid"]),
            start_ticks=int(data["start_ticks"]),
            log_path=str(data["log_path"]),
        )


def _start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after its closing paren are fixed.
    fields = stat.rsplit(")", 1)[1].split()
    state = fields[0]
    if state in ("Z", "X"):
        return None
    return int(fields[19])


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB, from ``/proc`` (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process, from ``/proc`` (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def is_running(record: ProcessRecord) -> bool:
    """Whether the recorded process is alive and still the one we started."""
    return _start_ticks(record.pid) == record.start_ticks


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None,
    scrub_env_prefixes: Sequence[str] = (),
) -> ProcessRecord:
    """Start ``argv`` detached in a new session, stdout and stderr appended to ``log_path``.

    It inherits this process's environment, less the variables starting with one of
    ``scrub_env_prefixes`` (for servers that read every variable of a prefix), plus ``env``.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(tuple(scrub_env_prefixes))
    }
    if env:
        full_env.update(env)
    with log_path.open("ab") as out:
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            raise StackError(f"cannot start {argv[0]}: {exc}") from exc
    ticks = _start_ticks(proc.pid)
    if ticks is None:
        proc.wait()
        raise StackError(f"{argv[0]} exited at once (exit {proc.returncode}); see {log_path}")
    # The stack outlives this Python process (`robolake stack up` returns), so it must not be
    # reaped here; forget the Popen object without a ResourceWarning.
    proc.returncode = 0
    log.info("started %s as pid %d (log %s)", Path(argv[0]).name, proc.pid, log_path)
    return ProcessRecord(pid=proc.pid, start_ticks=ticks, log_path=str(log_path))


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our child (it is when the stack ran in-process)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop(record: ProcessRecord, *, timeout: float, name: str) -> None:
    """SIGTERM the process's session, wait up to ``timeout`` s, then SIGKILL it."""
    if not is_running(record):
        return
    try:
        os.killpg(record.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(record.pid)
        if not is_running(record):
            log.info("stopped %s (pid %d)", name, record.pid)
            return
        time.sleep(0.1)
    log.warning("%s (pid %d) ignored SIGTERM for %.0f s; killing it", name, record.pid, timeout)
    try:
        os.killpg(record.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    for _ in range(50):
        _reap(record.pid)
        if not is_running(record):
            return
        time.sleep(0.1)
    raise StackError(f"{name} (pid {record.pid}) survived SIGKILL")


def free_port(preferred: int | None = None) -> int:
    """A free TCP port on 127.0.0.1; ``preferred`` if it is free (so a restart keeps its ports)."""
    if preferred:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # Servers bind with SO_REUSEADDR, so connections in TIME_WAIT from their previous
            # run do not make the port busy for them; probe the same way.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", preferred))
            except OSError:
                pass
            else:
                return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tail(path: str | Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, for error messages and failing tests."""
    try:
        with Path(path).open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    record: ProcessRecord,
    interval: float = 0.2,
) -> None:
    """Poll ``check`` until it is true; fail clearly if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if not is_running(record):
            _reap(record.pid)
            raise StackError(
                f"{what} exited during start-up; last lines of {record.log_path}:\n"
                f"{tail(record.log_path)}"
            )
        try:
            if check():
                return
        except Exception as exc:
            log.debug("%s not ready: %s", what, exc)
        if time.monotonic() >= deadline:
            raise StackError(
                f"{what} not ready after {timeout:.0f} s; last lines of {record.log_path}:\n"
                f"{tail(record.log_path)}"
            )
        time.sleep(interval)
