from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from robolake.collector.devices import DeviceRegistry, DeviceRegistryError


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
