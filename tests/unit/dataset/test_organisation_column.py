"""Organisations come from the index column; the device registry only for rows without one.

Index files written before the column existed lack it, so a bucket holds both kinds; these tests
write both kinds of file side by side and read them the way readers do (the contract's schema,
newest row per episode, then :func:`with_organisation`).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from robolake.dataset import episodes as dataset_episodes
from robolake.dataset.episodes import (
    UNKNOWN_ORGANISATION,
    EpisodeFilter,
    episode_infos,
    filter_index,
    newest_rows,
    with_organisation,
)
from robolake.dataset.storage import open_index
from robolake.devices.registry import DeviceRegistry
from robolake.ops.inventory import enrich
from robolake.writer.index import index_table

_DAY = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)


def _row(episode_id: str, device_id: str, organisation: str | None, hour: int) -> dict[str, object]:
    return {
        "episode_id": episode_id, "capture_point_id": "cp-1", "device_id": device_id,
        "robot_type": "g1", "scene": "lab", "task": "pick", "operator": "op",
        "started_at": _DAY, "ended_at": _DAY + dt.timedelta(seconds=10), "tags": [],
        "license": None, "consent": None, "manifest_json": "{}", "streams": [],
        "shard_files": [], "complete": True, "quality_flags": [],
        "indexed_at": _DAY + dt.timedelta(hours=hour), "organisation": organisation,
    }  # fmt: skip


def _write(root: Path, date: str, name: str, table: pa.Table) -> None:
    folder = root / f"date={date}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / name)


@pytest.fixture
def bucket(tmp_path: Path) -> Path:
    """An index of both generations: ``old-*`` rows in a file without the column (sorting
    first, so an inferred schema would be the old one), ``new`` in a file with it, and ``moved``
    indexed once by an old writer and again, later, by a new one."""
    root = tmp_path / "index"
    old = index_table(
        [_row("old-1", "dev-old", None, 0), _row("moved", "dev-moved", None, 0)]
    ).drop_columns(["organisation"])
    assert "organisation" not in old.column_names
    _write(root, "2026-01-05", "a.parquet", old)
    _write(
        root,
        "2026-01-06",
        "b.parquet",
        index_table([_row("new", "dev-new", "acme", 1), _row("moved", "dev-moved", "initech", 1)]),
    )
    return root


def _read(root: Path) -> pa.Table:
    table = open_index(str(root), pafs.LocalFileSystem()).to_table()
    return newest_rows(table)


def _registry(tmp_path: Path) -> Path:
    registry = DeviceRegistry(tmp_path / "devices.json")
    registry.add_many(
        [
            ("dev-old", "cp-1", "registry-org"),
            ("dev-new", "cp-1", "registry-now"),  # moved since: must not rewrite its past
            ("dev-moved", "cp-1", "registry-now"),
        ]
    )
    return registry.path


def test_old_and_new_index_files_read_as_one_table(bucket: Path) -> None:
    table = _read(bucket)
    assert table["episode_id"].to_pylist() == ["moved", "new", "old-1"]
    assert table["organisation"].to_pylist() == ["initech", "acme", None]


def test_the_column_wins_and_only_null_rows_fall_back_to_the_registry(
    bucket: Path, tmp_path: Path
) -> None:
    table = with_organisation(_read(bucket), _registry(tmp_path))
    assert table["organisation"].to_pylist() == ["initech", "acme", "registry-org"]
    assert table.schema.names == dataset_episodes.empty_index().schema.names
    acme = filter_index(table, EpisodeFilter(organisations=("acme",)))
    assert acme["episode_id"].to_pylist() == ["new"]
    assert [e.organisation for e in episode_infos(table)] == ["initech", "acme", "registry-org"]


def test_the_registry_is_not_opened_when_every_row_has_an_organisation(
    bucket: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[Path] = []

    class Spy(DeviceRegistry):
        def __init__(self, path: Path) -> None:
            opened.append(path)
            super().__init__(path)

    path = _registry(tmp_path)
    monkeypatch.setattr(dataset_episodes, "DeviceRegistry", Spy)
    table = _read(bucket)
    stamped = table.filter(pc.is_valid(table["organisation"]))
    assert with_organisation(stamped, path)["organisation"].to_pylist() == ["initech", "acme"]
    assert opened == []
    with_organisation(table, path)
    assert opened == [path]


def test_without_a_registry_legacy_rows_are_unknown_and_a_warning_says_why(
    bucket: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for legacy in (None, tmp_path / "absent.json"):
        caplog.clear()
        table = with_organisation(_read(bucket), legacy)
        assert table["organisation"].to_pylist() == ["initech", "acme", UNKNOWN_ORGANISATION]
        assert "1 device(s) have index rows without an organisation" in caplog.text


def test_reports_count_by_the_column(bucket: Path, tmp_path: Path) -> None:
    """The operators' per-episode table groups by the stamped organisation too."""
    table = enrich(_read(bucket), {"new": 5}, _registry(tmp_path))
    assert table.select(["episode_id", "organisation"]).to_pylist() == [
        {"episode_id": "moved", "organisation": "initech"},
        {"episode_id": "new", "organisation": "acme"},
        {"episode_id": "old-1", "organisation": "registry-org"},
    ]
