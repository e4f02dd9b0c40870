"""The import graph of src/gigmcp keeps to the layers docs/architecture.md draws.

The allowed order is written once, in the fenced block under "## Layers" of
docs/architecture.md: one line per layer, lowest first, the packages of a layer separated
by spaces (a top-level module such as ``config`` counts as a package). Every import is
read with ``ast``, wherever it stands (inside functions and ``TYPE_CHECKING`` blocks
too), and these fail, each naming the file and the import:

* a package importing one in a higher layer, or another package of its own layer;
* a package missing from the block (one listed but absent is allowed: it may be on
  its way);
* an import cycle between packages, or between files.

Owns reading the graph and these checks. It must never import the gateway's modules
(reading them is enough, and importing would run them).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PACKAGE = SRC / "gigmcp"
ARCHITECTURE = ROOT / "docs" / "architecture.md"


@dataclass(frozen=True, slots=True)
class Import:
    source: str  # the importing module, dotted
    target: str  # the imported module, dotted
    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line} imports {self.target}"


def layers() -> list[list[str]]:
    text = ARCHITECTURE.read_text()
    m = re.search(r"^## Layers\n.*?^```[^\n]*\n(.*?)^```", text, re.M | re.S)
    assert m, f"{ARCHITECTURE.relative_to(ROOT)}: no fenced block under '## Layers'"
    return [line.split() for line in m.group(1).splitlines() if line.strip()]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def package_of(module: str) -> str:
    """``gigmcp.store.models`` → ``store``; ``gigmcp.config`` → ``config``; the root
    ``gigmcp`` → ``gigmcp``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def imports(known: dict[str, Path]) -> Iterator[Import]:
    for source, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        yield from imports_in(tree, source, path, known)


def imports_in(tree: ast.AST, source: str, path: Path, known: dict[str, Path]) -> Iterator[Import]:
    """Every import of a gigmcp module anywhere in ``tree`` (``ast.walk`` enters
    functions, classes and ``if TYPE_CHECKING:`` blocks alike)."""
    is_init = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "gigmcp":
                    yield Import(source, _existing(alias.name, known), path, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, source, is_init)
            if base.split(".")[0] != "gigmcp":
                continue
            for alias in node.names:
                # ``from gigmcp.vault import keys`` imports the module gigmcp.vault.keys.
                sub = f"{base}.{alias.name}"
                target = sub if sub in known else _existing(base, known)
                yield Import(source, target, path, node.lineno)


def _absolute(node: ast.ImportFrom, source: str, is_init: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = source.split(".")
    if not is_init:
        parts = parts[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, *([node.module] if node.module else [])])


def _existing(name: str, known: dict[str, Path]) -> str:
    """The module a dotted name refers to (an attribute path ends at its module)."""
    parts = name.split(".")
    while len(parts) > 1 and ".".join(parts) not in known:
        parts.pop()
    return ".".join(parts)


def cycles(edges: dict[str, dict[str, Import]]) -> list[list[Import]]:
    """One cycle per strongly connected component of more than one node (or a node
    importing itself), as the imports that close it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:  # Tarjan; the graphs are small, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, {}):
                components.append(component)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return [_cycle_in(sorted(c)[0], c, edges) for c in components]


def _cycle_in(start: str, component: set[str], edges: dict[str, dict[str, Import]]) -> list[Import]:
    """A shortest path from ``start`` back to itself inside ``component``."""
    previous: dict[str, tuple[str, Import]] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w, imp in sorted(edges.get(v, {}).items()):
                if w not in component or w in previous:
                    continue
                previous[w] = (v, imp)
                if w == start:
                    path = []
                    node = start
                    while True:
                        v_, imp_ = previous[node]
                        path.append(imp_)
                        node = v_
                        if node == start:
                            return path[::-1]
                following.append(w)
        frontier = following
    raise AssertionError(f"no cycle through {start}")


def graph() -> list[Import]:
    return [i for i in imports(modules()) if i.source != i.target]


def test_every_package_is_in_a_layer() -> None:
    listed = [p for layer in layers() for p in layer]
    twice = sorted({p for p in listed if listed.count(p) > 1})
    assert not twice, f"listed in more than one place in the Layers block: {twice}"
    present = {package_of(m) for m in modules()} - {"gigmcp"}
    missing = sorted(present - set(listed))
    assert not missing, (
        f"packages missing from the Layers block of {ARCHITECTURE.relative_to(ROOT)}: {missing}"
    )


def test_the_root_package_imports_nothing_of_its_own() -> None:
    found = [str(i) for i in graph() if i.source == "gigmcp"]
    assert not found, "src/gigmcp/__init__.py must not import the gateway:\n" + "\n".join(found)


def test_imports_go_only_to_lower_layers() -> None:
    rank = {p: n for n, layer in enumerate(layers()) for p in layer}
    wrong = []
    for i in graph():
        src, dst = package_of(i.source), package_of(i.target)
        if src == dst or src == "gigmcp":
            continue
        if dst == "gigmcp" or src not in rank or dst not in rank:
            wrong.append(f"{i}: {dst!r} is not in a layer")
        elif rank[dst] >= rank[src]:
            where = "the same layer as" if rank[dst] == rank[src] else "a higher layer than"
            wrong.append(f"{i}: {dst!r} is in {where} {src!r}")
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_no_cycle_between_packages() -> None:
    edges: dict[str, dict[str, Import]] = {}
    for i in graph():
        src, dst = package_of(i.source), package_of(i.target)
        if src != dst:
            edges.setdefault(src, {}).setdefault(dst, i)
    found = cycles(edges)
    assert not found, "import cycles between packages:\n" + "\n\n".join(
        "\n".join(str(i) for i in cycle) for cycle in found
    )


def test_no_cycle_between_files() -> None:
    edges: dict[str, dict[str, Import]] = {}
    for i in graph():
        edges.setdefault(i.source, {}).setdefault(i.target, i)
    found = cycles(edges)
    assert not found, "import cycles between files:\n" + "\n\n".join(
        "\n".join(str(i) for i in cycle) for cycle in found
    )


def test_the_checks_see_what_they_must() -> None:
    """The reader is not blind: imports inside functions and TYPE_CHECKING blocks, and
    relative ones, are edges; a made-up cycle is found and a chain is not."""
    known = modules()
    code = """
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from gigmcp.store.models import Server
def later():
    from gigmcp.vault import keys
    import gigmcp.core.views
from . import errors
from ..sandbox import mode
"""
    path = PACKAGE / "upstream" / "probe.py"
    found = {i.target for i in imports_in(ast.parse(code), "gigmcp.upstream.probe", path, known)}
    assert found == {
        "gigmcp.store.models",
        "gigmcp.vault.keys",
        "gigmcp.core.views",
        "gigmcp.upstream",
        "gigmcp.sandbox.mode",
    }
    a_b = Import("a", "b", path, 1)
    b_c = Import("b", "c", path, 2)
    c_a = Import("c", "a", path, 3)
    assert cycles({"a": {"b": a_b}, "b": {"c": b_c}, "c": {"a": c_a}}) == [[a_b, b_c, c_a]]
    assert cycles({"a": {"b": a_b}, "b": {"c": b_c}}) == []


# Outside the store and the service layer a module may hold an Engine (to hand it on)
# and catch SQLAlchemy's errors, but never build a query, open a Session or touch a model.
ORM_PACKAGES = {"store", "control"}
ORM_ALLOWED = {"sqlalchemy": {"Engine"}, "sqlalchemy.exc": None}  # None: any name


def orm_uses(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "sqlalchemy" and alias.name != "sqlalchemy.exc":
                    yield node.lineno, f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "gigmcp.store.models" or node.module.startswith("sqlalchemy"):
                allowed = ORM_ALLOWED.get(node.module, set())
                for alias in node.names:
                    if allowed is not None and alias.name not in allowed:
                        yield node.lineno, f"from {node.module} import {alias.name}"
            elif node.module == "gigmcp.store" and any(a.name == "models" for a in node.names):
                yield node.lineno, "from gigmcp.store import models"


def test_no_orm_outside_the_store_and_the_service_layer() -> None:
    wrong = []
    for name, path in modules().items():
        if package_of(name) in ORM_PACKAGES:
            continue
        for line, what in orm_uses(ast.parse(path.read_text(), str(path))):
            wrong.append(f"{path.relative_to(ROOT)}:{line}: {what}")
    assert not wrong, "ORM outside store/ and control/:\n" + "\n".join(wrong)


def test_the_orm_check_sees_a_session() -> None:
    code = """
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from sqlalchemy.exc import IntegrityError
from gigmcp.store.models import Server
def later():
    import sqlalchemy.orm
"""
    assert sorted(w for _, w in orm_uses(ast.parse(code))) == [
        "from gigmcp.store.models import Server",
        "from sqlalchemy import select",
        "from sqlalchemy.orm import Session",
        "import sqlalchemy.orm",
    ]
