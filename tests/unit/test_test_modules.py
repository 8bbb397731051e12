"""Every test module and test helper imports under a name of its own.

pytest's default import mode puts each test directory without ``__init__.py`` on ``sys.path``
and imports its files by basename: two ``test_workers.py`` in two such directories made a
fresh-clone ``make test`` stop at collection ("import file mismatch"), which runs of one
directory never show; two helpers of the same basename would be worse -- the second directory's
tests would silently import the first one's. This reads the tree, so it fails at once.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parents[1]


def _module_name(path: Path) -> str:
    """The name pytest (rootdir ``prepend`` mode) imports ``path`` under."""
    parts = [path.stem]
    directory = path.parent
    while (directory / "__init__.py").exists():
        parts.insert(0, directory.name)
        directory = directory.parent
    return ".".join(parts)


def test_no_two_test_files_share_an_import_name() -> None:
    names: dict[str, list[str]] = defaultdict(list)
    for path in sorted(TESTS_DIR.rglob("*.py")):
        if path.name in ("conftest.py", "__init__.py") or "__pycache__" in path.parts:
            continue
        names[_module_name(path)].append(str(path.relative_to(TESTS_DIR)))
    clashes = {name: paths for name, paths in names.items() if len(paths) > 1}
    assert not clashes, f"give these files distinct names: {clashes}"
    assert "test_test_modules" in names  # the walk found this very file
