"""The shape of the code, read statically (ast; nothing is imported): vaar's packages import each
other without cycles, and no module grows past MAX_LINES.

A package here is `vaar.<name>`: a sub-package (vaar.sem, vaar.collection, ...) or a top-level
module (vaar.config, vaar.pipeline, ...). Every import counts, wherever it stands: at the top,
inside a function, under `if TYPE_CHECKING:`; a lazy import still is a dependency."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "vaar"
MAX_LINES = 400
# Modules allowed over MAX_LINES for now, each with the reason; an entry that is no longer
# needed fails the test too, so the list only shrinks.
OVER_LIMIT: dict[str, str] = {
    "vaar.collection.store": "the schema and every query of the collection store, kept in one "
    "place (issue 16); under the limit only by splitting the Store class itself",
}


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path) -> dict[str, Path]:
    """Every module under the package folder `root`, by dotted name."""
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def package_of(module: str) -> str:
    """vaar.sem.bridge -> vaar.sem; vaar.config -> vaar.config; vaar -> vaar."""
    return ".".join(module.split(".")[:2])


def imports(path: Path, name: str, known: set[str], top: str) -> list[tuple[str, int]]:
    """(imported module of `top`, line) for every import statement in the file."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from its own package (a module's parent), up
                here = name.split(".")[: len(name.split(".")) - node.level + is_package]
                base = ".".join(here + ([node.module] if node.module else []))
            for alias in node.names:  # `from vaar import errors` imports the module vaar.errors
                sub = f"{base}.{alias.name}"
                found.append((sub if sub in known else base, node.lineno))
    return [(m, line) for m, line in found if m == top or m.startswith(top + ".")]


def package_graph(root: Path) -> dict[str, dict[str, list[str]]]:
    """{package: {package it imports: ["file:line", ...]}}, a package's imports of itself
    left out."""
    found = modules(root)
    graph: dict[str, dict[str, list[str]]] = {package_of(m): {} for m in found}
    for name, path in found.items():
        for target, line in imports(path, name, set(found), root.name):
            src, dst = package_of(name), package_of(target)
            if src != dst:
                where = f"{path.relative_to(root.parent)}:{line}"
                places = graph[src].setdefault(dst, [])
                if where not in places:  # `from m import a, b` is one import
                    places.append(where)
    return graph


def cycles(graph: dict[str, dict[str, list[str]]]) -> list[str]:
    """One line per group of packages that import each other (a strongly connected component),
    with the imports that close it."""

    def reachable(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), {}):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    reach = {node: reachable(node) for node in graph}
    groups = {
        frozenset({node} | {other for other in reach[node] if node in reach[other]})
        for node in graph
        if node in reach[node]
    }
    lines = []
    for group in sorted(groups, key=sorted):
        edges = [
            f"{src} -> {dst} ({', '.join(graph[src][dst])})"
            for src in sorted(group)
            for dst in sorted(graph[src])
            if dst in group
        ]
        lines.append(" <-> ".join(sorted(group)) + ": " + "; ".join(edges))
    return lines


def test_vaar_packages_import_each_other_without_cycles():
    found = cycles(package_graph(PACKAGE))
    assert not found, "import cycles between packages:\n" + "\n".join(found)


def test_the_graph_reaches_every_package():
    """The check above sees the real structure: the packages, and the imports between them."""
    graph = package_graph(PACKAGE)
    for package in ("vaar.config", "vaar.collection", "vaar.data", "vaar.sem", "vaar.report"):
        assert package in graph
    assert "vaar.config" in graph["vaar.collection"]
    assert "vaar.errors" in graph["vaar.config"]


def test_no_module_over_the_line_limit():
    sizes = {
        name: len(path.read_text(encoding="utf-8").splitlines())
        for name, path in modules(PACKAGE).items()
    }
    over = [f"{n} ({sizes[n]} lines)" for n in sorted(sizes) if sizes[n] > MAX_LINES]
    unexpected = [o for o in over if o.split()[0] not in OVER_LIMIT]
    assert not unexpected, f"over {MAX_LINES} lines: {', '.join(unexpected)}"
    stale = [n for n in OVER_LIMIT if sizes.get(n, 0) <= MAX_LINES]
    assert stale == [], "no longer over the limit: remove from OVER_LIMIT"


# -- the checker itself, on packages made for the purpose ----------------------------------------


def make_package(root: Path, files: dict[str, str]) -> Path:
    top = root / "pkg"
    for rel, text in {"__init__.py": "", **files}.items():
        path = top / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(top).parents:
            (top / parent / "__init__.py").touch()
        path.write_text(text)
    return top


CYCLIC = {
    "at the top": {"a/x.py": "import pkg.b.y\n", "b/y.py": "from pkg.a import x\n"},
    "inside a function": {
        "a/x.py": "from pkg.b.y import f\n",
        "b/y.py": "def f():\n    from pkg.a.x import g\n",
    },
    "under TYPE_CHECKING": {
        "a/x.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import Y\n",
        "b/__init__.py": "from pkg.a.x import X\n",
    },
    "a top-level module, imported from the root": {
        "config.py": "from pkg.a import x\n",
        "a/x.py": "from pkg import config\n",
    },
    "relative imports": {
        "a/x.py": "from ..b import y\n",
        "b/y.py": "from ..a.x import X\n",
    },
    "through a third package": {
        "a/x.py": "import pkg.b\n",
        "b/__init__.py": "import pkg.c.z\n",
        "c/z.py": "from pkg.a import x\n",
    },
}


@pytest.mark.parametrize("case", CYCLIC)
def test_a_cycle_is_found(tmp_path, case):
    (line,) = cycles(package_graph(make_package(tmp_path, CYCLIC[case])))
    assert line.startswith("pkg.a <-> ")
    assert "pkg/a/x.py:" in line


ACYCLIC = {
    "one way": {"a/x.py": "import pkg.b.y\n", "b/y.py": "import os\n"},
    "within one package": {"a/x.py": "from pkg.a import y\n", "a/y.py": "from pkg.a import x\n"},
    "the root's own names": {
        "__init__.py": "__version__ = '1'\n",
        "a/x.py": "from pkg import __version__\n",
        "b/y.py": "from pkg import __version__\nimport pkg.a.x\n",
    },
    "another package of the same prefix": {
        "a/x.py": "import pkgextra\nimport pkg.b\n",
        "b/__init__.py": "import pkgextra.a\n",
    },
}


@pytest.mark.parametrize("case", ACYCLIC)
def test_no_cycle_where_there_is_none(tmp_path, case):
    assert cycles(package_graph(make_package(tmp_path, ACYCLIC[case]))) == []
