"""The tests' own layout: the helpers they share live in tests/support/, and no module
under tests/ imports another one from outside it.

Every ``.py`` under tests/ (but the installed peers in tests/peers) is read with ``ast``,
wherever an import stands (inside functions and ``TYPE_CHECKING`` blocks too), relative
imports resolved against the file's package, and a ``pytest_plugins`` list counted as
imports. An import of ``tests`` or ``tests.X`` fails, naming the file and the line, unless
X is ``support`` or under it: a test module, a conftest or a test peer is never imported.
Fixtures stay in conftest.py files, which pytest finds by their place.

Owns these checks. It must never import the modules it reads.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
SUPPORT = TESTS / "support"
PEERS = TESTS / "peers"  # npm's node_modules and the jails' venv: not ours


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> list[Path]:
    return sorted(
        p
        for p in TESTS.rglob("*.py")
        if not p.is_relative_to(PEERS) and "__pycache__" not in p.parts
    )


def imported(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """``(line, dotted name)`` for every import in ``tree``; ``from a.b import c`` gives
    ``a.b.c`` (``c`` may be a module), and ``pytest_plugins`` entries count."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_package)
            for alias in node.names:
                yield node.lineno, base if alias.name == "*" else f"{base}.{alias.name}"
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytest_plugins" for t in node.targets
        ):
            values = node.value.elts if isinstance(node.value, ast.List | ast.Tuple) else []
            for value in [node.value, *values]:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    yield value.lineno, value.value


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, *([node.module] if node.module else [])])


def allowed(name: str) -> bool:
    """Anything outside ``tests``, and ``tests.support`` with what is under it."""
    if name != "tests" and not name.startswith("tests."):
        return True
    return name == "tests.support" or name.startswith("tests.support.")


def bad_imports(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """The imports of ``source`` (the text of ``module``) that the layout forbids."""
    tree = ast.parse(source)
    return sorted(
        (line, name) for line, name in imported(tree, module, is_package) if not allowed(name)
    )


def test_no_module_under_tests_imports_a_test_module() -> None:
    paths = sources()
    # The walk found the suite (not an empty folder) and stayed out of the peers.
    assert Path(__file__).resolve() in paths and len(paths) > 100
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in paths
        for line, name in bad_imports(
            path.read_text(), module_name(path), path.name == "__init__.py"
        )
    ]
    assert found == [], "helpers belong in tests/support/:\n" + "\n".join(found)


def test_the_check_catches_a_made_up_bad_import() -> None:
    source = """
from typing import TYPE_CHECKING
import pytest
from gigmcp.core.views import ServerDef
from tests.support.gateway import GatewayProc
from tests.support import mcp_client
from tests.router.test_aggregation import connect
from tests import conftest
import tests.sandbox.test_network
if TYPE_CHECKING:
    from tests.packages.conftest import flip
def later():
    from tests.endpoint.conftest import gw
from . import lab
from .proxy_support import running_proxy
from ..support.flow import flow
from ..router import test_pins
pytest_plugins = ["tests.support.astguard", "tests.databases"]
"""
    assert bad_imports(source, "tests.egress.test_probe") == [
        (7, "tests.router.test_aggregation.connect"),
        (8, "tests.conftest"),
        (9, "tests.sandbox.test_network"),
        (11, "tests.packages.conftest.flip"),
        (13, "tests.endpoint.conftest.gw"),
        (14, "tests.egress.lab"),
        (15, "tests.egress.proxy_support.running_proxy"),
        (17, "tests.router.test_pins"),
        (18, "tests.databases"),
    ]
    # The same relative import is fine from inside the support package.
    assert (
        bad_imports("from . import gateway\nfrom .flow import flow\n", "tests.support.proxy") == []
    )
    assert bad_imports("from . import gateway\n", "tests.support", is_package=True) == []


def test_the_support_package_holds_no_test() -> None:
    for path in sorted(SUPPORT.rglob("*.py")):
        assert not path.name.startswith("test_") and not path.name.endswith("_test.py"), path
        assert path.name != "conftest.py", path
        tree = ast.parse(path.read_text(), str(path))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert not node.name.startswith("test"), f"{path.relative_to(ROOT)}: {node.name}"
            if isinstance(node, ast.ClassDef):
                assert not node.name.startswith("Test"), f"{path.relative_to(ROOT)}: {node.name}"
