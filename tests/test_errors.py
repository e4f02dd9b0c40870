"""The gateway's error tree holds: every exception class is on it, every name is its own.

Owns the check over the whole package, found by importing each module (not a list kept
by hand, which would miss the next class). The toolspec engine is left out on purpose:
it runs in the jail on the standard library alone and never imports the gateway, so its
errors cannot derive from ``GigError``.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import gigmcp
from gigmcp import errors
from gigmcp.errors import GigError

# Not on the tree, each with the reason. An internal signal never leaves the module that
# raises it, and no edge ever sees it.
OFF_THE_TREE: dict[str, str] = {}
# Runs main() on import; its only content is that call.
NOT_IMPORTED = {"gigmcp.__main__"}
ENGINE = "gigmcp.toolspec_engine"


def _exception_classes() -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    for info in pkgutil.walk_packages(gigmcp.__path__, prefix="gigmcp."):
        name = info.name
        if name in NOT_IMPORTED or name == ENGINE or name.startswith(ENGINE + "."):
            continue
        module = importlib.import_module(name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if obj.__module__ == name and issubclass(obj, BaseException):
                found.append(obj)
    return found


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def test_the_walk_finds_the_classes() -> None:
    names = {_qualified(c) for c in _exception_classes()}
    # One from the tree, one from a plane, one from a leaf module: the walk is not empty.
    assert {
        "gigmcp.errors.GigError",
        "gigmcp.registry.errors.ManifestError",
        "gigmcp.sandbox.runtime.RuntimeScanError",
    } <= names


def test_every_error_is_on_the_tree() -> None:
    stray = [
        _qualified(c)
        for c in _exception_classes()
        if not issubclass(c, GigError) and _qualified(c) not in OFF_THE_TREE
    ]
    assert stray == [], "derive these from a branch of gigmcp.errors (or list them, with why)"


def test_no_two_error_classes_share_a_name() -> None:
    seen: dict[str, list[str]] = {}
    for cls in _exception_classes():
        seen.setdefault(cls.__name__, []).append(_qualified(cls))
    assert {name: where for name, where in seen.items() if len(where) > 1} == {}


def test_the_engine_stays_off_the_tree() -> None:
    engine = Path(gigmcp.__file__).parent / "toolspec_engine"
    for path in sorted(engine.rglob("*.py")):
        assert "gigmcp.errors" not in path.read_text(), path


def test_errors_imports_nothing() -> None:
    tree = ast.parse(Path(errors.__file__).read_text())
    imports = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        # Not an import: a directive on how this file's annotations are read.
        and not (isinstance(node, ast.ImportFrom) and node.module == "__future__")
    ]
    assert imports == []
