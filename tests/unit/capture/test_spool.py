from __future__ import annotations

import json
from pathlib import Path

import pytest

from robolake.capture.errors import SpoolFull
from robolake.capture.spool import Journal, Spool


def _journal(spool: Spool, episode_id: str = "ep-1") -> Journal:
    journal = Journal(episode_id=episode_id, manifest='{"episode_id": "ep-1"}')
    spool.save(journal)
    return journal


def test_chunks_are_numbered_per_stream_and_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    journal = _journal(spool)
    a0 = spool.put(journal, "imu", b"a" * 10, rows=5)
    a1 = spool.put(journal, "imu", b"b" * 10, rows=7)
    c0 = spool.put(journal, "cam_head", b"c" * 10, rows=1)
    assert (a0.seq, a1.seq, c0.seq) == (0, 1, 0)
    assert journal.completion() == {
        "streams": {"imu": {"chunks": 2, "rows": 12}, "cam_head": {"chunks": 1, "rows": 1}}
    }
    assert [(c.stream, c.seq) for c in spool.pending("ep-1")] == [
        ("cam_head", 0),
        ("imu", 0),
        ("imu", 1),
    ]
    assert spool.used_bytes == 30
    spool.acknowledged(a0)
    spool.acknowledged(a0)  # twice is harmless
    assert spool.used_bytes == 20
    assert [(c.stream, c.seq) for c in spool.pending("ep-1")] == [("cam_head", 0), ("imu", 1)]


def test_state_survives_a_restart_and_orphans_are_adopted(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    journal = _journal(spool)
    spool.put(journal, "imu", b"x" * 10, rows=3)
    # A crash after writing the chunk file but before the journal counted it:
    (tmp_path / "ep-1" / "imu.00000001.4.arrow").write_bytes(b"y" * 10)
    again = Spool(tmp_path)
    assert again.used_bytes == 20
    assert again.episodes() == ["ep-1"]
    loaded = again.load("ep-1")
    assert loaded.streams["imu"].chunks == 2
    assert loaded.streams["imu"].rows == 7
    assert [c.seq for c in again.pending("ep-1")] == [0, 1]


def test_cap_turns_an_outage_into_a_clear_error(tmp_path: Path) -> None:
    spool = Spool(tmp_path, cap_bytes=25)
    journal = _journal(spool)
    spool.put(journal, "imu", b"x" * 20, rows=1)
    with pytest.raises(SpoolFull, match="unreachable too long"):
        spool.put(journal, "imu", b"x" * 10, rows=1)
    assert journal.streams["imu"].chunks == 1  # the refused chunk was not counted


def test_rejected_chunks_are_kept_with_their_reason(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    journal = _journal(spool)
    chunk = spool.put(journal, "imu", b"bad", rows=1)
    target = spool.reject(chunk, "schema_mismatch", "wrong columns")
    assert target.read_bytes() == b"bad"
    assert json.loads(target.with_suffix(".json").read_text())["reason"] == "schema_mismatch"
    assert spool.pending("ep-1") == []
    assert spool.used_bytes == 0
    spool.finish("ep-1")
    assert spool.episodes() == []
