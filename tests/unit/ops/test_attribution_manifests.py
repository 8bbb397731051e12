"""Attribution by table manifest: each manifest's files are read once, a rescan reads nothing new,
and the totals always equal attributing every listed file afresh."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from robolake.ops import attribution
from robolake.ops.attribution import ShardAttribution, StoredFile


def _file(root: Path, key: str, episodes: list[str]) -> StoredFile:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"episode_id": episodes}), path)
    return StoredFile(key, path.stat().st_size, 0)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Keys whose ``episode_id`` column was read, in order."""
    seen: list[str] = []
    real = attribution.episode_rows

    def counting(fs: pafs.FileSystem, bucket: str, key: str) -> dict[str, int]:
        seen.append(key)
        return real(fs, bucket, key)

    monkeypatch.setattr(attribution, "episode_rows", counting)
    return seen


def _reader(files: Sequence[StoredFile]) -> Callable[[], Sequence[StoredFile]]:
    return lambda: files


def test_manifests_are_read_once_and_totals_match_a_fresh_split(
    tmp_path: Path, reads: list[str]
) -> None:
    a = _file(tmp_path, "t/a.parquet", ["e1", "e1", "e2"])
    b = _file(tmp_path, "t/b.parquet", ["e2"])
    c = _file(tmp_path, "t/c.parquet", ["e3", "e1"])
    shared = ShardAttribution(pafs.LocalFileSystem(), str(tmp_path))

    def fresh(*files: StoredFile) -> dict[str, int]:
        """What a new attribution of ``files`` says (its reads are not counted)."""
        before = len(reads)
        found = ShardAttribution(pafs.LocalFileSystem(), str(tmp_path)).bytes_by_episode(files)
        del reads[before:]
        return found

    first = {"m1": _reader([a, b])}
    assert shared.bytes_by_manifest(first) == (fresh(a, b), 2)
    assert sorted(reads) == [a.key, b.key]

    reads.clear()
    assert shared.bytes_by_manifest(first) == (fresh(a, b), 2)
    assert reads == [], "a rescan of unchanged manifests reads no file"

    # A commit adds m2; then a rewrite replaces m1 by m3 listing a again (b removed).
    second = {"m1": _reader([a, b]), "m2": _reader([c])}
    assert shared.bytes_by_manifest(second) == (fresh(a, b, c), 3)
    assert reads == [c.key]
    reads.clear()
    third = {"m3": _reader([a]), "m2": _reader([c])}
    assert shared.bytes_by_manifest(third) == (fresh(a, c), 2)
    assert reads == [], "a file listed by a rewritten manifest is not read again"

    # Once no manifest lists a file, its split is forgotten.
    assert shared.bytes_by_manifest({"m2": _reader([c])}) == (fresh(c), 1)
    assert shared.bytes_by_manifest({"m4": _reader([a])}) == (fresh(a), 1)
    assert reads == [a.key]
