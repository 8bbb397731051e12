"""``robolake devices import``/``compact`` through the real command line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from robolake.cli import main
from robolake.devices import registry as devices
from robolake.devices.registry import DeviceRegistry

_HEADER = "device_id,capture_point_id,organisation\n"


def _devices(path: Path, *args: str) -> int:
    return main(["devices", "--devices-file", str(path), *args])


def _tokens(text: str) -> dict[str, str]:
    lines = text.splitlines()
    assert lines[0] == "device_id,token"
    return dict(line.split(",") for line in lines[1:])


def test_import_csv_enrols_every_row_with_one_fsync_and_prints_tokens_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    registry_file = tmp_path / "devices.json"
    DeviceRegistry(registry_file).add("robot-0", "cp-0", "acme")
    source = tmp_path / "devices.csv"
    source.write_text(_HEADER + "robot-1,cp-1,acme\n\nrobot-2, cp-1 ,acme\r\nrobot-3,cp-2,beta\n")
    appends: list[int] = []
    append = devices._append

    def counting(fd: int, data: bytes) -> None:
        appends.append(len(data))
        append(fd, data)

    monkeypatch.setattr(devices, "_append", counting)
    assert _devices(registry_file, "import", str(source)) == 0
    out = capsys.readouterr()
    assert len(appends) == 1  # one batch write, one fsync
    tokens = _tokens(out.out)
    assert list(tokens) == ["robot-1", "robot-2", "robot-3"]
    assert "not shown again" in out.err
    replica = DeviceRegistry(registry_file)
    for device_id, capture_point in [("robot-1", "cp-1"), ("robot-2", "cp-1"), ("robot-3", "cp-2")]:
        identity = replica.authenticate(tokens[device_id])
        assert identity is not None
        assert (identity.device_id, identity.capture_point_id) == (device_id, capture_point)
    stored = registry_file.read_text()
    assert not any(token.split("_", 2)[2] in stored for token in tokens.values())


def test_import_json_writes_tokens_to_a_new_0600_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry_file = tmp_path / "devices.json"
    source = tmp_path / "fleet.json"
    rows = [
        {"device_id": f"robot-{n}", "capture_point_id": "cp-9", "organisation": "acme"}
        for n in range(50)
    ]
    source.write_text(json.dumps(rows))
    tokens_out = tmp_path / "tokens.csv"
    assert _devices(registry_file, "import", str(source), "--tokens-out", str(tokens_out)) == 0
    out = capsys.readouterr()
    assert "rlk_" not in out.out + out.err
    assert oct(os.stat(tokens_out).st_mode & 0o777) == "0o600"
    tokens = _tokens(tokens_out.read_text())
    assert len(tokens) == 50
    registry = DeviceRegistry(registry_file)
    assert all(registry.authenticate(token) is not None for token in tokens.values())


def test_import_detects_the_format_from_the_content(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry_file = tmp_path / "devices.json"
    as_json, as_csv = tmp_path / "fleet-a", tmp_path / "fleet-b"
    as_json.write_text('\n [{"device_id":"a","capture_point_id":"cp","organisation":"o"}]')
    as_csv.write_text("organisation,device_id,capture_point_id\no,b,cp\n")  # any column order
    assert _devices(registry_file, "import", str(as_json)) == 0
    assert _devices(registry_file, "import", str(as_csv)) == 0
    capsys.readouterr()
    listed = {
        (d.device_id, d.capture_point_id, d.organisation)
        for d in DeviceRegistry(registry_file).devices()
    }
    assert listed == {("a", "cp", "o"), ("b", "cp", "o")}


def test_a_bad_csv_is_refused_whole_naming_every_bad_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry_file = tmp_path / "devices.json"
    source = tmp_path / "devices.csv"
    source.write_text(
        _HEADER
        + "robot-1,cp-1,acme\n"  # line 2
        + "robot 2,cp-1,acme\n"  # line 3: a space
        + "robot-3,cp-1\n"  # line 4: a field short
        + "robot-1,cp-2,acme\n"  # line 5: repeats line 2
        + "robot-5,cp-1,ac;me\n"  # line 6: bad organisation
    )
    assert _devices(registry_file, "import", str(source)) == 1
    err = capsys.readouterr().err
    assert "nothing enrolled (4 problems)" in err
    assert "line 3: invalid device_id 'robot 2'" in err
    assert "line 4: 2 fields, the header has 3" in err
    assert "line 5: device_id 'robot-1' repeated (first at line 2)" in err
    assert "line 6: invalid organisation 'ac;me'" in err
    assert "rlk_" not in err
    assert not registry_file.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("device_id,capture_point\nr,cp\n", "line 1: the header must name the columns"),
        (_HEADER, "no devices in the file"),
        ("", "no devices in the file"),
    ],
)
def test_csv_without_the_expected_header_or_rows_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    source = tmp_path / "devices.csv"
    source.write_text(content)
    assert _devices(tmp_path / "devices.json", "import", str(source)) == 1
    assert message in capsys.readouterr().err


def test_a_bad_json_file_is_refused_whole_naming_every_bad_item(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry_file = tmp_path / "devices.json"
    source = tmp_path / "devices.json.import"
    good = {"device_id": "robot-1", "capture_point_id": "cp", "organisation": "acme"}
    items = [
        good,
        {"device_id": "robot-2", "capture_point_id": "cp"},
        {**good, "device_id": 7},
        {**good, "token": "x"},
        "robot-5",
        good,
    ]
    source.write_text(json.dumps(items))
    assert _devices(registry_file, "import", "--format", "json", str(source)) == 1
    err = capsys.readouterr().err
    assert "item 2: missing: organisation" in err
    assert "item 3: not a string: device_id" in err
    assert "item 4: unknown: token" in err
    assert "item 5: expected an object, got str" in err
    assert "item 6: device_id 'robot-1' repeated (first at item 1)" in err
    assert not registry_file.exists()
    source.write_text(json.dumps({"devices": items}))
    assert _devices(registry_file, "import", "--format", "json", str(source)) == 1
    assert "expected a JSON array" in capsys.readouterr().err


def test_import_refuses_devices_that_already_have_an_active_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry_file = tmp_path / "devices.json"
    DeviceRegistry(registry_file).add("robot-2", "cp-1", "acme")
    before = registry_file.read_bytes()
    source = tmp_path / "devices.csv"
    source.write_text(_HEADER + "robot-1,cp-1,acme\nrobot-2,cp-1,acme\n")
    assert _devices(registry_file, "import", str(source)) == 1
    assert "line 3: device 'robot-2' already has an active token" in capsys.readouterr().err
    assert registry_file.read_bytes() == before


def test_an_existing_tokens_file_is_never_overwritten_and_nothing_is_enrolled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry_file = tmp_path / "devices.json"
    source = tmp_path / "devices.csv"
    source.write_text(_HEADER + "robot-1,cp-1,acme\n")
    tokens_out = tmp_path / "tokens.csv"
    tokens_out.write_text("earlier tokens\n")
    assert _devices(registry_file, "import", str(source), "--tokens-out", str(tokens_out)) == 1
    assert "is never overwritten" in capsys.readouterr().err
    assert tokens_out.read_text() == "earlier tokens\n"
    assert list(DeviceRegistry(registry_file).devices()) == []


def test_dry_run_checks_and_enrols_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry_file = tmp_path / "devices.json"
    source = tmp_path / "devices.csv"
    source.write_text(_HEADER + "robot-1,cp-1,acme\nrobot-2,cp-1,acme\n")
    assert _devices(registry_file, "import", "--dry-run", str(source)) == 0
    assert "2 devices, all valid" in capsys.readouterr().out
    assert not registry_file.exists()


def test_compact_command_folds_revocations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry_file = tmp_path / "devices.json"
    registry = DeviceRegistry(registry_file)
    token = registry.add("robot-1", "cp-1", "acme")
    registry.add("robot-2", "cp-1", "acme")
    registry.revoke("robot-1")
    assert _devices(registry_file, "compact") == 0
    assert "3 lines -> 2 tokens" in capsys.readouterr().out
    assert len(registry_file.read_text().splitlines()) == 3  # header + 2 tokens
    assert DeviceRegistry(registry_file).authenticate(token) is None
    assert _devices(tmp_path / "missing.json", "compact") == 1
    assert "no device registry" in capsys.readouterr().err
