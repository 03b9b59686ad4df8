"""The import graph between the top-level packages: no cycle, and only the directions the architecture allows.

Every ``.py`` file is parsed, not imported, so imports inside functions and ``if TYPE_CHECKING:`` blocks
count as much as those at the top: a cycle held shut by a late import is still a cycle.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The project's top-level packages; sdk/ and monitoring/ count once they hold Python.
PACKAGES = (
    "kernel",
    "services",
    "gateway",
    "training",
    "bentos",
    "deploy",
    "benchmarks",
    "scripts",
    "sdk",
    "monitoring",
)
# Where an import of a project package may come from; tests/ imports everything and is imported by nothing.
PROJECT = (*PACKAGES, "tests")

Graph = Mapping[tuple[str, str], list[str]]  # (importer, imported) -> the "file:line" of each import that makes it


@dataclass(frozen=True)
class Rule:
    """``source`` must not import any of ``forbidden``, except from the files in ``exempt``."""

    name: str
    source: str
    forbidden: frozenset[str]
    why: str
    exempt: frozenset[str] = frozenset()


RULES = (
    Rule(
        "kernel-imports-no-project-package",
        "kernel",
        frozenset(PROJECT) - {"kernel"},
        "the kernel is shared by services/ and gateway/ and imports neither, nor any other package of ours",
    ),
    Rule(
        "gateway-does-not-import-services",
        "gateway",
        frozenset({"services"}),
        "the gateway reaches what it shares with the api through kernel/",
    ),
    Rule(
        "services-import-gateway-only-in-the-api-root",
        "services",
        frozenset({"gateway"}),
        "only the api's composition root installs the in-process gateway",
        exempt=frozenset({"services/api.py"}),
    ),
    Rule(
        "training-does-not-import-bentos",
        "training",
        frozenset({"bentos"}),
        "model specs live in the serving package; bentos/ scripts use training/, not the other way round",
    ),
)
NO_CYCLES = "no-cycle-between-packages"
# Rules main breaks today while the code is being moved (issue 10): strict, so each turns red once it holds.
# Delete a line here when the move that fixes it is merged.
FAILING_TODAY: dict[str, str] = {}


def _imported_modules(tree: ast.AST) -> Iterable[tuple[str, int]]:
    """Every absolute import in ``tree``, wherever it stands (module level, functions, TYPE_CHECKING blocks)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno
        # A relative import (level > 0) stays inside its own top-level package.


def package_graph(root: Path, packages: Iterable[str] = PACKAGES, project: Iterable[str] = PROJECT) -> Graph:
    """The imports between the top-level ``packages`` under ``root`` (any of ``project`` may be imported)."""
    names = set(project)
    graph: defaultdict[tuple[str, str], list[str]] = defaultdict(list)
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            where = path.relative_to(root).as_posix()
            for module, line in _imported_modules(ast.parse(path.read_bytes(), filename=where)):
                imported = module.split(".")[0]
                if imported in names and imported != package:
                    graph[(package, imported)].append(f"{where}:{line}")
    return {edge: sorted(places, key=_file_then_line) for edge, places in graph.items()}


def _file_then_line(place: str) -> tuple[str, int]:
    path, line = place.rsplit(":", 1)
    return path, int(line)


def find_cycle(edges: Iterable[tuple[str, str]]) -> list[str] | None:
    """One cycle among ``edges`` as ``[a, b, ..., a]``, or None when the graph has none."""
    following: defaultdict[str, list[str]] = defaultdict(list)
    for source, target in sorted(edges):
        following[source].append(target)
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for target in following[node]:
            cycle = visit(target, [*path, node])
            if cycle:
                return cycle
        done.add(node)
        return None

    for start in sorted(following):
        cycle = visit(start, [])
        if cycle:
            return cycle
    return None


def _places(graph: Graph, edge: tuple[str, str], exempt: frozenset[str] = frozenset()) -> list[str]:
    return [place for place in graph.get(edge, []) if place.rsplit(":", 1)[0] not in exempt]


def _describe(edge: tuple[str, str], places: list[str], shown: int = 5) -> str:
    more = f" and {len(places) - shown} more" if len(places) > shown else ""
    return f"  {edge[0]} -> {edge[1]}, at " + ", ".join(places[:shown]) + more


@pytest.fixture(scope="module")
def graph() -> Graph:
    return package_graph(REPO)


def _case(name: str, value: object = None) -> object:
    marks = [pytest.mark.xfail(strict=True, reason=FAILING_TODAY[name])] if name in FAILING_TODAY else []
    return pytest.param(value, id=name, marks=marks)


@pytest.mark.parametrize("rule", [_case(rule.name, rule) for rule in RULES])
def test_a_package_imports_only_what_its_rule_allows(graph: Graph, rule: Rule) -> None:
    broken = {
        edge: places
        for target in sorted(rule.forbidden)
        if (places := _places(graph, edge := (rule.source, target), rule.exempt))
    }
    assert not broken, f"{rule.name} ({rule.why}):\n" + "\n".join(_describe(e, p) for e, p in broken.items())


@pytest.mark.parametrize("_", [_case(NO_CYCLES)])
def test_no_cycle_between_top_level_packages(graph: Graph, _: object) -> None:
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle {' -> '.join(cycle)}:\n" + "\n".join(
        _describe(edge, graph[edge]) for edge in pairwise(cycle)
    )


def test_rules_name_real_packages_and_the_failing_ones_exist() -> None:
    for rule in RULES:
        assert rule.source in PACKAGES and rule.forbidden <= set(PROJECT), rule.name
        assert all((REPO / path).is_file() for path in rule.exempt), rule.name
    assert set(FAILING_TODAY) <= {rule.name for rule in RULES} | {NO_CYCLES}


def test_the_graph_holds_the_imports_every_package_makes(graph: Graph) -> None:
    # A scanner that found nothing would pass every rule: these edges are the kernel's reason to exist.
    assert ("services", "kernel") in graph and ("gateway", "kernel") in graph


def test_the_graph_reads_late_and_type_checking_imports_and_skips_relative_ones(tmp_path: Path) -> None:
    sources = {
        "a/__init__.py": "",
        "a/x.py": (
            "from __future__ import annotations\n"
            "import os\n"
            "from typing import TYPE_CHECKING\n"
            "from . import y\n"
            "from .y import z\n"
            "if TYPE_CHECKING:\n"
            "    from c.types import T\n"
            "def late():\n"
            "    import b.inner as inner\n"
            "    return inner\n"
        ),
        "a/y.py": "import a.x\nz = 1\n",
        "b/inner.py": "from a import y\n",
        "c/types.py": "T = int\nimport d\n",
    }
    for name, text in sources.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = package_graph(tmp_path, packages=("a", "b", "c", "z"), project=("a", "b", "c"))
    assert found == {("a", "c"): ["a/x.py:7"], ("a", "b"): ["a/x.py:9"], ("b", "a"): ["b/inner.py:1"]}


@pytest.mark.parametrize(
    ("edges", "cycle"),
    [
        ([], None),
        ([("a", "b"), ("b", "c"), ("a", "c")], None),  # a diamond is no cycle
        ([("a", "b"), ("b", "c"), ("c", "a")], ["a", "b", "c", "a"]),
        ([("x", "a"), ("a", "b"), ("b", "a")], ["a", "b", "a"]),  # reached from outside the cycle
        ([("a", "b"), ("c", "d"), ("d", "e"), ("e", "c")], ["c", "d", "e", "c"]),  # in another component
    ],
)
def test_find_cycle_on_a_tiny_graph(edges: list[tuple[str, str]], cycle: list[str] | None) -> None:
    assert find_cycle(edges) == cycle
