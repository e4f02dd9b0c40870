"""Fixtures of the npm and PyPI installer tests: the locks, the offline sources that
scripts/bootstrap prepared from the real registries, a servers folder the jails can read,
a small npm registry on loopback for packages the tests write themselves, and an MCP
handshake with a server started in the real jail. The helpers behind them live in
tests/support/packages.py.

It must never download anything: a missing offline source fails with the command that
prepares it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from gigmcp.packages.npm import NpmSource
from gigmcp.packages.pypi import PypiSource
from gigmcp.packages.spec import LockEntry, PackageSpec
from tests.support.packages import (
    NPM_CACHE,
    NPM_LOCK,
    ROOT,
    WHEELHOUSE,
    LocalRegistry,
    read_pypi_lock,
)

SUBNET = "10.213.47.0/24"  # apart from the other suites' pools


def _prepared(folder: Path) -> None:
    if not (folder / ".gigmcp-installed").is_file():
        pytest.fail(f"{folder.relative_to(ROOT)} is missing: run scripts/bootstrap")


# --- the real packages ------------------------------------------------------------------


@pytest.fixture(scope="session")
def npm_lock() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(NPM_LOCK.read_text())
    return data


@pytest.fixture(scope="session")
def npm_spec(npm_lock: dict[str, Any]) -> PackageSpec:
    p = npm_lock["package"]
    lock = tuple(LockEntry(**e) for e in npm_lock["lock"])
    return PackageSpec("npm", p["identifier"], p["version"], p["integrity"], lock)


@pytest.fixture(scope="session")
def npm_source(npm_lock: dict[str, Any]) -> NpmSource:
    _prepared(NPM_CACHE)
    # Offline: a package missing from the cache is an error, never a download.
    return NpmSource(cache=str(NPM_CACHE), offline=True, before=npm_lock["before"])


@pytest.fixture(scope="session")
def pypi_spec() -> PackageSpec:
    entries = read_pypi_lock()
    main = next(e for e in entries if e.identifier == "mcp-server-time")
    lock = tuple(e for e in entries if e is not main)
    return PackageSpec("pypi", main.identifier, main.version, main.integrity, lock)


@pytest.fixture(scope="session")
def pypi_source() -> PypiSource:
    _prepared(WHEELHOUSE)
    return PypiSource(no_index=True, find_links=(str(WHEELHOUSE),))


# --- where installs go --------------------------------------------------------------------


def _make_servers_dir() -> Path:
    # Not under pytest's tmp dir (mode 0700): the jails' uids must reach the installs.
    folder = Path(tempfile.mkdtemp(prefix="gigmcp-servers-"))
    folder.chmod(0o755)
    return folder


@pytest.fixture
def servers_dir() -> Iterator[Path]:
    folder = _make_servers_dir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def module_servers_dir() -> Iterator[Path]:
    folder = _make_servers_dir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- a small npm registry on loopback -----------------------------------------------------


@pytest.fixture
def local_registry() -> Iterator[LocalRegistry]:
    registry = LocalRegistry()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = unquote(self.path.split("?", 1)[0])
            if path in registry.tarballs:
                body, kind = registry.tarballs[path], "application/octet-stream"
            elif path.lstrip("/") in registry.packages:
                body = json.dumps(registry.packages[path.lstrip("/")]).encode()
                kind = "application/json"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    registry.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield registry
    finally:
        server.shutdown()
        server.server_close()


# --- the real jail ------------------------------------------------------------------------


@pytest.fixture
async def jail() -> AsyncIterator[Any]:
    from gigmcp.sandbox.launcher import SandboxConfig, SandboxLauncher

    launcher = SandboxLauncher(SandboxConfig(subnet=SUBNET, pool_size=0))
    await launcher.start()
    try:
        yield launcher
    finally:
        await launcher.aclose()
