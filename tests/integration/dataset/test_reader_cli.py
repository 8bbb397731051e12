"""``robolake episodes list|show`` and ``robolake export lerobot`` on the pipeline's dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dataset_harness import ProducedDataset

from robolake.cli import main


@pytest.fixture
def env(produced: ProducedDataset, monkeypatch: pytest.MonkeyPatch) -> ProducedDataset:
    for name, value in produced.endpoints.to_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ROBOLAKE_DEVICES_FILE", str(produced.devices_file))
    return produced


def test_episodes_list_filters_and_prints_a_table(
    env: ProducedDataset, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["episodes", "list", "--scene", "factory", "--organisation", "org-2"]) == 0
    out = capsys.readouterr().out
    wanted = [i for i, p in env.plans.items() if p.scene == "factory" and p.device == "dev-b"]
    assert len(wanted) == 1
    assert wanted[0] in out
    assert out.splitlines()[0].split()[:3] == ["episode_id", "started_at", "seconds"]
    assert "1 episode(s)" in out
    assert main(["episodes", "list", "--json", "--task", "red", "--complete"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["episode_id"] for r in rows} == {
        i for i, p in env.plans.items() if "red" in p.task.lower()
    }


def test_episodes_show_prints_streams(
    env: ProducedDataset, capsys: pytest.CaptureFixture[str]
) -> None:
    episode_id = next(iter(env.episodes))
    assert main(["episodes", "show", episode_id]) == 0
    out = capsys.readouterr().out
    assert episode_id in out
    assert "joint_state.v1" in out
    assert "cam_head" in out


def test_export_lerobot_command(
    env: ProducedDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "lerobot"
    code = main(["export", "lerobot", "--out", str(out), "--fps", "10", "--robot-type",
                 "arm_7dof", "--no-videos"])  # fmt: skip
    assert code == 0
    info = json.loads((out / "arm_7dof" / "meta/info.json").read_text())
    assert info["total_episodes"] == 2
    assert info["video_path"] is None
    assert "arm_7dof: 2 episodes" in capsys.readouterr().out
    assert main(["export", "lerobot", "--out", str(out), "--fps", "10"]) == 1  # not empty
