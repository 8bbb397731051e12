"""The layering of ``services/robolake``, read from the source: which package may import which.

The rules and the reason for each are in ``docs/architecture.md``; a test keeps the two lists
equal. Imports are collected with :mod:`ast`, not by importing the modules, so an import inside a
function (the CLI imports its subcommands lazily), a relative import or an
``importlib.import_module("robolake...")`` with a literal name counts the same as one at the top
of a file -- a dependency is a dependency whenever it runs.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = ROOT / "services" / "robolake"
TESTS_DIR = ROOT / "tests"
ARCHITECTURE_DOC = ROOT / "docs" / "architecture.md"


@dataclass(frozen=True)
class Import:
    """``importer`` imports ``target`` (both dotted module names) at ``path:line``."""

    importer: str
    target: str
    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} imports {self.target}"


def module_name(path: Path, base: Path) -> tuple[str, bool]:
    """The dotted name of the module at ``path`` (relative to ``base``) and whether it is a
    package, which relative imports need: ``from . import x`` in ``a/b/__init__.py`` means
    ``a.b.x``, in ``a/b/c.py`` it means ``a.b.x`` too."""
    parts = list(path.relative_to(base).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def imports_in(
    source: str,
    module: str,
    *,
    is_package: bool = False,
    known: frozenset[str] = frozenset(),
    path: str = "<string>",
) -> list[Import]:
    """Every ``robolake`` module that ``source`` (the text of ``module``) imports.

    ``from robolake.x import y`` names ``robolake.x.y`` when that is a module in ``known``
    (``from robolake import demo`` depends on the demo module, not on the root package), else
    ``robolake.x``.
    """
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []

    def add(target: str, node: ast.stmt | ast.expr) -> None:
        if target == "robolake" or target.startswith("robolake."):
            found.append(Import(module, target, path, node.lineno))

    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                if node.level - 1 >= len(anchor):
                    raise ValueError(f"{path}:{node.lineno}: relative import beyond the top")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                add(candidate if candidate in known else base, node)
        elif (
            isinstance(node, ast.Call)
            and _called_name(node.func) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            add(node.args[0].value, node)
    return sorted(found, key=lambda i: i.line)


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _sources(base: Path, under: Path) -> Iterator[tuple[Path, str, bool]]:
    for file in sorted(under.rglob("*.py")):
        name, is_package = module_name(file, base)
        yield file, name, is_package


def collect(base: Path, under: Path) -> list[Import]:
    """The ``robolake`` imports of every module below ``under`` (module names relative to
    ``base``)."""
    files = list(_sources(base, under))
    known = frozenset(name for _, name, _ in _sources(PACKAGE_DIR.parent, PACKAGE_DIR)) | {
        name for _, name, _ in files
    }
    found: list[Import] = []
    for file, name, is_package in files:
        found += imports_in(
            file.read_text(encoding="utf-8"),
            name,
            is_package=is_package,
            known=known,
            path=str(file.relative_to(ROOT)),
        )
    return found


def area(module: str) -> str:
    """The part of the house a module belongs to: its subpackage (``collector``) or, for a
    top-level module, its own name (``cli``, ``demo``, ``endpoints``); ``robolake`` itself is
    ``robolake``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


# -- the rules --------------------------------------------------------------------------------

#: The deployable services and the libraries that ship with them -- code that runs in production.
PRODUCT = frozenset(
    {"collector", "writer", "capture", "dataset", "episode", "devices", "kafka", "lake", "ops"}
)
#: Modules that stand below everything: the error root, endpoint settings, log formatting.
FOUNDATIONS = frozenset({"errors", "endpoints", "logs", "metrics_http"})


@dataclass(frozen=True)
class Rule:
    """Modules for which ``applies`` holds may not import modules for which ``forbids`` holds.

    ``name`` is the rule's heading in ``docs/architecture.md``; the reason is written there.
    """

    name: str
    applies: Callable[[str], bool]
    forbids: Callable[[str, str], bool]  # (importer, target)

    def violations(self, imports: Iterable[Import]) -> list[Import]:
        return [
            i for i in imports if self.applies(i.importer) and self.forbids(i.importer, i.target)
        ]


def _in(*areas: str) -> Callable[[str], bool]:
    return lambda module: area(module) in areas


def _targets(*areas: str) -> Callable[[str, str], bool]:
    return lambda importer, target: area(target) in areas and area(importer) != area(target)


def _anything(module: str) -> bool:
    return True


def _is_main(importer: str, target: str) -> bool:
    return target.endswith(".__main__") or target == "__main__"


RULES: tuple[Rule, ...] = (
    Rule(
        "capture and dataset do not import collector or writer",
        _in("capture", "dataset"),
        _targets("collector", "writer"),
    ),
    Rule(
        "collector and writer do not import each other",
        _in("collector", "writer"),
        lambda importer, target: {area(importer), area(target)} == {"collector", "writer"},
    ),
    Rule(
        "episode imports only robolake.errors",
        _in("episode"),
        lambda importer, target: area(target) not in ("episode", "errors"),
    ),
    Rule(
        "devices, kafka and lake import no service",
        _in("devices", "kafka", "lake"),
        lambda importer, target: area(target) not in (area(importer), "episode", *FOUNDATIONS),
    ),
    Rule(
        "foundations import only robolake.errors",
        lambda module: area(module) in FOUNDATIONS,
        lambda importer, target: area(target) not in (area(importer), "errors"),
    ),
    Rule(
        "product code does not import the local stack, the launcher, bench or demo",
        lambda module: area(module) in PRODUCT,
        _targets("stack", "launch", "bench", "demo"),
    ),
    Rule(
        "nothing outside bench imports bench",
        _anything,
        _targets("bench"),
    ),
    Rule(
        "only robolake.cli imports demo",
        lambda module: module != "robolake.cli",
        _targets("demo"),
    ),
    Rule(
        "only robolake.cli imports a subcommand module",
        lambda module: module != "robolake.cli",
        lambda importer, target: (
            target.endswith(".cli") and area(importer) != area(target) and target != "robolake.cli"
        ),
    ),
    Rule(
        "nothing imports a __main__ module",
        _anything,
        _is_main,
    ),
)


@pytest.fixture(scope="module")
def package_imports() -> list[Import]:
    found = collect(PACKAGE_DIR.parent, PACKAGE_DIR)
    assert len(found) > 100, "the import collector found almost nothing: is the path right?"
    return found


@pytest.mark.parametrize("rule", RULES, ids=[r.name for r in RULES])
def test_layering_rule_holds(rule: Rule, package_imports: list[Import]) -> None:
    broken = rule.violations(package_imports)
    assert not broken, f"layering rule {rule.name!r} broken (see docs/architecture.md):\n" + (
        "\n".join(map(str, broken))
    )


def test_package_graph_has_no_cycles(package_imports: list[Import]) -> None:
    """Packages form layers only if no two of them need each other, however indirectly."""
    graph: dict[str, set[str]] = {}
    for i in package_imports:
        if area(i.importer) != area(i.target):
            graph.setdefault(area(i.importer), set()).add(area(i.target))
    cycle = _find_cycle(graph)
    assert cycle is None, "packages import each other in a cycle: " + " -> ".join(cycle or [])


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}  # "open" while on the path, "done" once every successor is
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == "open":
                return [*path[path.index(successor) :], successor]
            if successor not in state and (cycle := visit(successor)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_tests_import_no_main_module() -> None:
    """Tests drive the code through what it exports, as its users do, never through a script's
    entry module."""
    broken = [i for i in collect(ROOT, TESTS_DIR) if _is_main(i.importer, i.target)]
    assert not broken, "\n".join(map(str, broken))


def test_every_rule_is_explained_in_the_architecture_doc() -> None:
    """A rule without its reason gets deleted the first time it is inconvenient."""
    headings = set(
        re.findall(
            r"^#+\s+(?:\d+\.\s*)?(.+?)\s*$", ARCHITECTURE_DOC.read_text(encoding="utf-8"), re.M
        )
    )
    names = {r.name for r in RULES} | {"the package graph has no cycles"}
    missing = sorted(n for n in names if n not in {h.strip("`") for h in headings})
    assert not missing, f"rules without a heading in {ARCHITECTURE_DOC.name}: {missing}"


# -- the checker can fail ---------------------------------------------------------------------

PLANTED = """
import json
import robolake.errors
from robolake.episode import manifest
from ..collector import sink
from . import spool

def later():
    from robolake.bench.__main__ import measure
    import importlib
    importlib.import_module("robolake.writer.consumer")
"""
KNOWN = frozenset(
    {"robolake.episode.manifest", "robolake.collector.sink", "robolake.capture.spool"}
)


def test_import_collector_sees_every_kind_of_import() -> None:
    found = imports_in(PLANTED, "robolake.capture.uploader", known=KNOWN)
    assert [(i.target, i.line) for i in found] == [
        ("robolake.errors", 3),
        ("robolake.episode.manifest", 4),
        ("robolake.collector.sink", 5),
        ("robolake.capture.spool", 6),
        ("robolake.bench.__main__", 9),
        ("robolake.writer.consumer", 11),
    ]


def test_relative_imports_resolve_from_a_package_and_from_a_module() -> None:
    source = "from . import x\nfrom .. import y\nfrom ..a import z\n"
    in_package = imports_in(source, "robolake.dataset", is_package=True)
    in_module = imports_in(source, "robolake.dataset.reader")
    assert [i.target for i in in_package] == ["robolake.dataset", "robolake", "robolake.a"]
    assert [i.target for i in in_module] == ["robolake.dataset", "robolake", "robolake.a"]
    with pytest.raises(ValueError, match="beyond the top"):
        imports_in("from ... import x\n", "robolake.dataset.reader")


def test_a_planted_violation_breaks_the_rules_it_should() -> None:
    found = imports_in(PLANTED, "robolake.capture.uploader", known=KNOWN)
    broken = {r.name: [i.target for i in r.violations(found)] for r in RULES}
    assert broken == {
        "capture and dataset do not import collector or writer": [
            "robolake.collector.sink",
            "robolake.writer.consumer",
        ],
        "collector and writer do not import each other": [],
        "episode imports only robolake.errors": [],
        "devices, kafka and lake import no service": [],
        "foundations import only robolake.errors": [],
        "product code does not import the local stack, the launcher, bench or demo": [
            "robolake.bench.__main__"
        ],
        "nothing outside bench imports bench": ["robolake.bench.__main__"],
        "only robolake.cli imports demo": [],
        "only robolake.cli imports a subcommand module": [],
        "nothing imports a __main__ module": ["robolake.bench.__main__"],
    }


def test_the_contract_may_not_reach_up() -> None:
    found = imports_in("from robolake.dataset import storage\n", "robolake.episode.shards")
    (rule,) = [r for r in RULES if r.name == "episode imports only robolake.errors"]
    assert [i.target for i in rule.violations(found)] == ["robolake.dataset"]
    allowed = imports_in("from robolake.errors import RobolakeError\n", "robolake.episode.ids")
    assert rule.violations(allowed) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b", "c"}, "b": {"c"}}) is None
