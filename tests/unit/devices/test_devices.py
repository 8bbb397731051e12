from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from robolake.devices import registry as devices
from robolake.devices.registry import (
    Device,
    DeviceRegistry,
    DeviceRegistryError,
    _digest,
    validate_identifier,
)


def test_token_authenticates_to_its_device_and_is_stored_hashed(tmp_path: Path) -> None:
    registry = DeviceRegistry(tmp_path / "devices.json")
    token = registry.add("robot-1", "cp-7", "acme")
    identity = registry.authenticate(token)
    assert identity is not None
    assert (identity.device_id, identity.capture_point_id, identity.organisation) == (
        "robot-1",
        "cp-7",
        "acme",
    )
    stored = (tmp_path / "devices.json").read_text()
    secret = token.split("_", 2)[2]
    assert secret not in stored
    assert token not in stored
    assert oct(os.stat(tmp_path / "devices.json").st_mode & 0o777) == "0o600"


def test_unknown_malformed_and_tampered_tokens_are_refused(tmp_path: Path) -> None:
    registry = DeviceRegistry(tmp_path / "devices.json")
    token = registry.add("robot-1", "cp-7", "acme")
    assert registry.authenticate("") is None
    assert registry.authenticate("not-a-token") is None
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert registry.authenticate(tampered) is None


def test_revocation_seen_by_another_registry_instance_at_once(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    manager = DeviceRegistry(path)
    replica = DeviceRegistry(path)  # another collector process reading the same file
    token = manager.add("robot-1", "cp-7", "acme")
    assert replica.authenticate(token) is not None
    manager.revoke("robot-1")
    assert replica.authenticate(token) is None
    listed = {d.device_id: d.active for d in replica.devices()}
    assert listed == {"robot-1": False}


def test_second_active_token_for_a_device_is_refused_and_revoke_needs_one(tmp_path: Path) -> None:
    registry = DeviceRegistry(tmp_path / "devices.json")
    registry.add("robot-1", "cp-7", "acme")
    with pytest.raises(DeviceRegistryError, match="already has an active token"):
        registry.add("robot-1", "cp-7", "acme")
    registry.revoke("robot-1")
    with pytest.raises(DeviceRegistryError, match="no active token"):
        registry.revoke("robot-1")
    assert registry.authenticate(registry.add("robot-1", "cp-8", "acme")) is not None


@pytest.mark.parametrize("bad", ["", "has space", "x" * 200, "semi;colon", "-leading"])
def test_identifiers_are_checked(tmp_path: Path, bad: str) -> None:
    with pytest.raises(DeviceRegistryError, match="invalid device_id"):
        DeviceRegistry(tmp_path / "d.json").add(bad, "cp", "org")


def test_corrupt_registry_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    path.write_text(json.dumps({"devices": [{"nonsense": 1}]}))
    with pytest.raises(DeviceRegistryError, match="unreadable device registry"):
        DeviceRegistry(path).authenticate("rlk_0123456789abcdef_" + "a" * 43)


# -- the journal: O(1) adds, folding, compaction, replicas ---------------------------------------
class _FileIO:
    """Counts the registry's file I/O through its three module-level functions."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.appends: list[int] = []
        self.reads: list[int] = []
        self.rewrites = 0
        append, read, rewrite = devices._append, devices._read_from, devices._write_new_file

        def counting_append(fd: int, data: bytes) -> None:
            self.appends.append(len(data))
            append(fd, data)

        def counting_read(fd: int, offset: int) -> bytes:
            data = read(fd, offset)
            self.reads.append(len(data))
            return data

        def counting_rewrite(path: Path, data: bytes) -> os.stat_result:
            self.rewrites += 1
            return rewrite(path, data)

        monkeypatch.setattr(devices, "_append", counting_append)
        monkeypatch.setattr(devices, "_read_from", counting_read)
        monkeypatch.setattr(devices, "_write_new_file", counting_rewrite)

    def reset(self) -> None:
        self.appends.clear()
        self.reads.clear()
        self.rewrites = 0


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def _legacy_file(path: Path, *entries: Device) -> None:
    """The registry as the previous version wrote it: one JSON document."""
    payload = {"version": 1, "devices": [asdict(d) for d in entries]}
    path.write_text(json.dumps(payload, indent=1, sort_keys=True))


def test_an_add_appends_one_line_whatever_the_registry_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "devices.json"
    io = _FileIO(monkeypatch)
    registry = DeviceRegistry(path)
    registry.add("robot-0", "cp-1", "acme")
    assert io.rewrites == 1  # a new file is created whole, atomically
    per_add: list[tuple[int, int, int]] = []
    for n in range(1, 400):
        before = path.read_bytes()
        io.reset()
        registry.add(f"robot-{n}", "cp-1", "acme")
        after = path.read_bytes()
        assert after.startswith(before)  # the previous n entries are not rewritten
        per_add.append((len(io.appends), io.rewrites, sum(io.reads)))
        assert len(after) - len(before) == io.appends[0]
    # One append (one fsync), no rewrite and nothing read back, for the 2nd add as for the 400th.
    assert set(per_add) == {(1, 0, 0)}
    assert max(io.appends) < 400
    assert len(_lines(path)) == 1 + 400


def test_an_import_is_one_append_and_one_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = DeviceRegistry(tmp_path / "devices.json")
    registry.add("robot-0", "cp-1", "acme")
    io = _FileIO(monkeypatch)
    tokens = registry.add_many([(f"robot-{n}", "cp-2", "acme") for n in range(1, 501)])
    assert (len(io.appends), io.rewrites) == (1, 0)
    replica = DeviceRegistry(tmp_path / "devices.json")
    assert all(replica.authenticate(token) is not None for token in tokens.values())


def test_a_replica_reads_only_the_appended_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "devices.json"
    manager = DeviceRegistry(path)
    manager.add_many([(f"robot-{n}", "cp-1", "acme") for n in range(200)])
    replica = DeviceRegistry(path)  # a collector process sharing the file
    assert len(list(replica.devices())) == 200
    io = _FileIO(monkeypatch)
    token = manager.add("robot-new", "cp-2", "acme")
    appended = io.appends[0]
    io.reset()
    identity = replica.authenticate(token)
    assert identity is not None
    assert identity.device_id == "robot-new"
    assert io.reads == [appended]
    io.reset()
    assert replica.authenticate(token) is not None
    assert io.reads == []  # unchanged file: a stat, no read


def test_revoke_after_add_is_folded_by_every_reader(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    manager = DeviceRegistry(path)
    first = manager.add("robot-1", "cp-7", "acme")
    (revoked,) = manager.revoke("robot-1")
    second = manager.add("robot-1", "cp-8", "acme")
    ops = [line.get("op") for line in _lines(path)[1:]]
    assert ops == ["add", "revoke", "add"]
    fresh = DeviceRegistry(path)
    assert fresh.authenticate(first) is None
    identity = fresh.authenticate(second)
    assert identity is not None
    assert identity.capture_point_id == "cp-8"
    states = {d.token_id: d.active for d in fresh.devices()}
    assert states[revoked] is False
    assert list(states.values()).count(True) == 1


def test_compaction_folds_revocations_and_replicas_reload(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    manager = DeviceRegistry(path)
    tokens = manager.add_many([(f"robot-{n}", "cp-1", "acme") for n in range(3)])
    manager.revoke("robot-1")
    replica = DeviceRegistry(path)
    assert replica.authenticate(tokens["robot-0"]) is not None
    inode, header = path.stat().st_ino, _lines(path)[0]
    done = DeviceRegistry(path).compact()
    assert (done.tokens, done.lines_before) == (3, 4)
    assert done.bytes_after < done.bytes_before
    lines = _lines(path)
    assert [line.get("op") for line in lines[1:]] == ["add"] * 3
    assert path.stat().st_ino != inode
    assert lines[0]["generation"] != header["generation"]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert replica.authenticate(tokens["robot-1"]) is None  # still revoked after the fold
    assert replica.authenticate(tokens["robot-2"]) is not None
    manager.revoke("robot-2")  # the manager follows the replaced file, then appends again
    assert replica.authenticate(tokens["robot-2"]) is None
    assert [line.get("op") for line in _lines(path)[1:]] == ["add"] * 3 + ["revoke"]
    assert not list(tmp_path.glob("*.tmp*"))


def test_churn_keeps_the_journal_within_two_lines_per_token(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    registry = DeviceRegistry(path)
    registry.add_many([(f"robot-{n}", "cp-1", "acme") for n in range(20)])
    for n in range(200):  # revoke and re-enrol: the worst case for redundant lines
        registry.add_many([(f"robot-{n % 20}", "cp-1", "acme")], replace=True)
    tokens = len(list(registry.devices()))
    assert len(_lines(path)) - 1 <= 2 * tokens
    journal = path.stat().st_size
    registry.compact()
    assert journal < 1.4 * path.stat().st_size


def test_a_file_replaced_in_place_is_reloaded_whole(tmp_path: Path) -> None:
    path, other = tmp_path / "devices.json", tmp_path / "other.json"
    old = DeviceRegistry(path).add("robot-1", "cp-1", "acme")
    replica = DeviceRegistry(path)
    assert replica.authenticate(old) is not None
    new = DeviceRegistry(other).add_many([(f"robot-{n}", "cp-2", "acme") for n in range(5)])
    with path.open("r+b") as fh:  # same inode, longer content: a tail read would be wrong
        fh.write(other.read_bytes())
    assert replica.authenticate(old) is None
    assert replica.authenticate(new["robot-3"]) is not None


def test_a_torn_last_line_is_ignored_then_truncated_by_the_next_writer(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    token = DeviceRegistry(path).add("robot-1", "cp-1", "acme")
    replica = DeviceRegistry(path)
    assert replica.authenticate(token) is not None
    with path.open("ab") as fh:  # a writer died half-way through its line
        fh.write(b'{"device":{"capture_point_id":"cp-1","dev')
    assert replica.authenticate(token) is not None
    assert DeviceRegistry(path).authenticate(token) is not None
    second = DeviceRegistry(path).add("robot-2", "cp-1", "acme")
    assert len(_lines(path)) == 3  # every line parses: the torn one is gone
    assert replica.authenticate(second) is not None
    assert replica.authenticate(token) is not None


def test_old_single_document_registry_loads_and_the_first_write_converts_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "devices.json"
    secret = "s" * 43
    enrolled = Device("0123456789abcdef", "robot-1", "cp-7", "acme", _digest(secret), 1.0)
    gone = Device("fedcba9876543210", "robot-2", "cp-7", "acme", _digest("t" * 43), 1.0, 2.0)
    _legacy_file(path, enrolled, gone)
    token = f"rlk_{enrolled.token_id}_{secret}"
    registry = DeviceRegistry(path)
    identity = registry.authenticate(token)
    assert identity is not None
    assert identity.device_id == "robot-1"
    assert {d.device_id: d.active for d in registry.devices()} == {
        "robot-1": True,
        "robot-2": False,
    }
    with pytest.raises(DeviceRegistryError, match="already has an active token"):
        registry.add("robot-1", "cp-7", "acme")
    added = registry.add("robot-3", "cp-8", "acme")
    lines = _lines(path)
    assert lines[0]["format"] == "robolake-devices"
    assert len(lines) == 4
    fresh = DeviceRegistry(path)
    assert fresh.authenticate(token) is not None
    assert fresh.authenticate(added) is not None
    assert not fresh.authenticate(f"rlk_{gone.token_id}_{'t' * 43}")


def test_concurrent_writers_do_not_interleave(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    tokens: dict[str, str] = {}

    def enrol(worker: int) -> None:
        registry = DeviceRegistry(path)  # its own file descriptions: only flock orders them
        for n in range(25):
            tokens.update(registry.add_many([(f"robot-{worker}-{n}", "cp-1", "acme")]))

    threads = [threading.Thread(target=enrol, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(_lines(path)) == 1 + 100
    fresh = DeviceRegistry(path)
    assert len(tokens) == 100
    assert all(fresh.authenticate(token) is not None for token in tokens.values())


def test_a_batch_with_a_device_twice_or_already_enrolled_enrols_nothing(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    registry = DeviceRegistry(path)
    with pytest.raises(DeviceRegistryError, match="appears twice"):
        registry.add_many([("robot-1", "cp", "org"), ("robot-1", "cp", "org")])
    registry.add_many([("robot-1", "cp", "org"), ("robot-2", "cp", "org")])
    size = path.stat().st_size
    with pytest.raises(DeviceRegistryError, match="2 devices already have an active token"):
        registry.add_many(
            [("robot-3", "cp", "org"), ("robot-2", "cp", "org"), ("robot-1", "cp", "org")]
        )
    assert path.stat().st_size == size
    replaced = registry.add_many([("robot-1", "cp", "org")], replace=True)
    assert [line["op"] for line in _lines(path)[1:]] == ["add", "add", "revoke", "add"]
    assert registry.authenticate(replaced["robot-1"]) is not None


def test_a_corrupt_journal_line_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    DeviceRegistry(path).add("robot-1", "cp", "org")
    with path.open("ab") as fh:
        fh.write(b'{"op":"revoke","token_id":"0000000000000000","revoked_at":1}\n')
    with pytest.raises(DeviceRegistryError, match=r"unreadable device registry .*line 3"):
        list(DeviceRegistry(path).devices())


def test_a_newer_format_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    path.write_text('{"format":"robolake-devices","generation":"x","version":3}\n')
    with pytest.raises(DeviceRegistryError, match="version 3 is not supported"):
        DeviceRegistry(path).add("robot-1", "cp", "org")


def test_a_failed_append_enrols_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "devices.json"
    registry = DeviceRegistry(path)
    registry.add("robot-0", "cp", "org")
    before = path.read_bytes()
    append = devices._append

    def disk_full(fd: int, data: bytes) -> None:
        append(fd, data[: data.index(b"\n") + 1])  # the first of two lines made it
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(devices, "_append", disk_full)
    with pytest.raises(DeviceRegistryError, match="cannot write device registry"):
        registry.add_many([("robot-1", "cp", "org"), ("robot-2", "cp", "org")])
    assert path.read_bytes() == before
    monkeypatch.setattr(devices, "_append", append)
    assert registry.authenticate(registry.add("robot-1", "cp", "org")) is not None


def test_an_identifier_with_a_final_newline_is_refused() -> None:
    """Python's ``$`` matches before a final newline: 'dev-1\\n' passed as an identifier."""
    with pytest.raises(DeviceRegistryError, match="invalid device"):
        validate_identifier("device", "dev-1\n")
    assert validate_identifier("device", "dev-1") == "dev-1"
