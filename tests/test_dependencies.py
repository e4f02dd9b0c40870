"""Every runtime dependency declared in pyproject.toml is imported by the package.

A declared-but-unused dependency is installed on every gateway host for nothing and
widens what an operator must trust; the next piece of work declares a library when it
starts using it. This reads the declared list and the package's imports and fails on a
distribution no module imports.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "gigmcp"

# Distributions whose import name differs from their name on PyPI.
IMPORT_NAME = {
    "pynacl": "nacl",
    "pyelftools": "elftools",
    "dnspython": "dns",
    "pyyaml": "yaml",
    "httpx2": "httpx2",
    "opentelemetry-api": "opentelemetry",
    "opentelemetry-sdk": "opentelemetry",
    "opentelemetry-exporter-otlp-proto-http": "opentelemetry",
}
# Used without an import statement: SQLAlchemy loads psycopg when store/db.py turns a
# postgresql:// URL into postgresql+psycopg://.
LOADED_BY_NAME = {"psycopg": "postgresql+psycopg://"}


def _declared() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = []
    for spec in project["dependencies"]:
        m = re.match(r"[A-Za-z0-9_.-]+", spec)
        assert m, spec
        names.append(m.group(0).lower())
    return names


def _imported() -> set[str]:
    tops: set[str] = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                tops.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops.add(node.module.split(".")[0])
    return tops


def _unused(declared: list[str], imported: set[str], sources: str) -> list[str]:
    unused = []
    for dist in declared:
        if dist in LOADED_BY_NAME:
            if LOADED_BY_NAME[dist] not in sources:
                unused.append(dist)
            continue
        if IMPORT_NAME.get(dist, dist.replace("-", "_")) not in imported:
            unused.append(dist)
    return unused


def test_every_declared_dependency_is_used() -> None:
    sources = "\n".join(p.read_text() for p in SRC.rglob("*.py"))
    unused = _unused(_declared(), _imported(), sources)
    assert not unused, f"declared in pyproject.toml but imported nowhere in src/: {unused}"


def test_the_check_sees_a_dependency_that_is_not_imported() -> None:
    # The check itself can fail: a distribution nothing imports is reported, and one
    # loaded only by name is reported when the name is gone.
    assert _unused(["prometheus-client", "h11"], {"h11"}, "") == ["prometheus-client"]
    assert _unused(["psycopg"], set(), "sqlite://") == ["psycopg"]
