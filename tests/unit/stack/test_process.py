from __future__ import annotations

import socket
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from robolake.stack.errors import StackError
from robolake.stack.process import free_port, is_running, spawn, stop, tail, wait_until


def test_spawned_process_is_tracked_and_stopped(tmp_path: Path) -> None:
    record = spawn(
        [sys.executable, "-c", "import time; print('hello', flush=True); time.sleep(60)"],
        log_path=tmp_path / "p.log",
        cwd=tmp_path,
    )
    try:
        assert is_running(record)
        # A record with the same PID but another start time is not our process.
        assert not is_running(replace(record, start_ticks=record.start_ticks + 1))
        wait_until(lambda: "hello" in tail(record.log_path), timeout=30, what="p", record=record)
    finally:
        stop(record, timeout=10, name="p")
    assert not is_running(record)
    stop(record, timeout=10, name="p")  # stopping twice is safe


def test_wait_until_reports_a_dying_process_with_its_log(tmp_path: Path) -> None:
    record = spawn(
        [sys.executable, "-c", "import sys; print('boom: bad config'); sys.exit(3)"],
        log_path=tmp_path / "d.log",
        cwd=tmp_path,
    )
    with pytest.raises(StackError, match="boom: bad config"):
        wait_until(lambda: False, timeout=30, what="dying", record=record)


def test_free_port_prefers_a_free_preferred_port() -> None:
    port = free_port()
    assert free_port(port) == port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        assert free_port(port) != port


def test_spawn_scrubs_inherited_variables_of_the_given_prefixes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CATALOG_URI", "jdbc:sqlite::memory:")
    monkeypatch.setenv("AWS_PROFILE", "someone-else")
    monkeypatch.setenv("ROBOLAKE_KEPT", "yes")
    record = spawn(
        [
            sys.executable,
            "-c",
            "import os, time; print(sorted(os.environ), flush=True); time.sleep(60)",
        ],
        log_path=tmp_path / "env.log",
        env={"CATALOG_REST_PORT": "1"},
        cwd=tmp_path,
        scrub_env_prefixes=("CATALOG_", "AWS_"),
    )
    try:
        wait_until(lambda: "]" in tail(record.log_path), timeout=30, what="env", record=record)
    finally:
        stop(record, timeout=10, name="env")
    printed = tail(record.log_path)
    assert "'CATALOG_REST_PORT'" in printed  # what the caller passes stays
    assert "'ROBOLAKE_KEPT'" in printed
    assert "CATALOG_URI" not in printed
    assert "AWS_PROFILE" not in printed
