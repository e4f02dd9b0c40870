"""Fixtures of the npm and PyPI installer tests: the locks, the offline sources that
scripts/bootstrap prepared from the real registries, a servers folder the jails can read,
a small npm registry on loopback for packages the tests write themselves, and an MCP
handshake with a server started in the real jail.

It must never download anything: a missing offline source fails with the command that
prepares it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from gigmcp.packages.npm import NpmSource
from gigmcp.packages.pypi import PypiSource
from gigmcp.packages.spec import LaunchCommand, LockEntry, PackageSpec

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
NPM_LOCK = HERE / "npm-lock.json"
PYPI_LOCK = HERE / "pypi-lock.txt"
NPM_CACHE = ROOT / "tests" / "peers" / "npm-cache"
WHEELHOUSE = ROOT / "tests" / "peers" / "wheelhouse"
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


def read_pypi_lock() -> list[LockEntry]:
    entries = []
    for line in PYPI_LOCK.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        requirement, digest = line.split(" --hash=")
        name, version = requirement.split("==")
        entries.append(LockEntry(name, version, digest.strip()))
    return entries


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


def flip(integrity: str) -> str:
    """The same hash with one character changed, still well-formed (the character is
    inside the digest, clear of any base64 padding)."""
    i = len(integrity) - 5
    if integrity.startswith("sha256:"):
        new = "0" if integrity[i] != "0" else "1"
    else:
        new = "B" if integrity[i] != "B" else "C"
    return integrity[:i] + new + integrity[i + 1 :]


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


def leftovers(servers_dir: Path) -> list[str]:
    """Everything under ``servers_dir``: after a refused install, nothing at all."""
    return sorted(str(p.relative_to(servers_dir)) for p in servers_dir.rglob("*"))


# --- a small npm registry on loopback -----------------------------------------------------


def npm_tarball(manifest: dict[str, Any], files: dict[str, str]) -> bytes:
    """A package tarball as npm publishes one: everything under ``package/``."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, text in {"package.json": json.dumps(manifest), **files}.items():
            data = text.encode()
            info = tarfile.TarInfo(f"package/{name}")
            info.size, info.mode = len(data), 0o755 if name.endswith(".js") else 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def sri(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


@dataclass
class LocalRegistry:
    """Packuments and tarballs served over HTTP on 127.0.0.1, for the real npm."""

    url: str = ""
    packages: dict[str, dict[str, Any]] = field(default_factory=dict)
    tarballs: dict[str, bytes] = field(default_factory=dict)

    def publish(self, manifest: dict[str, Any], files: dict[str, str]) -> str:
        name, version = manifest["name"], manifest["version"]
        data = npm_tarball(manifest, files)
        path = f"/-/{name.replace('/', '-')}-{version}.tgz"
        self.tarballs[path] = data
        doc = self.packages.setdefault(name, {"name": name, "versions": {}, "dist-tags": {}})
        doc["versions"][version] = {
            **manifest,
            "dist": {"tarball": self.url + path, "integrity": sri(data)},
        }
        doc["dist-tags"]["latest"] = version
        return sri(data)


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


async def _exchange(proc: Any, message: dict[str, Any]) -> dict[str, Any] | None:
    proc.stdin.write(json.dumps(message).encode() + b"\n")
    await proc.stdin.drain()
    if "id" not in message:
        return None
    while True:
        line = await proc.stdout.readline()
        if not line:
            err = (await proc.stderr.read()).decode(errors="replace")[-2000:]
            raise AssertionError(f"the server closed its output; its stderr: {err}")
        reply: dict[str, Any] = json.loads(line)
        if reply.get("id") == message["id"]:
            return reply


async def mcp_tools_in_jail(launcher: Any, name: str, command: LaunchCommand) -> dict[str, Any]:
    """Start ``command`` in the real jail, complete ``initialize`` and ``tools/list``
    over its stdio, and return both results."""
    from gigmcp.core.instances import InstanceKey
    from gigmcp.core.launch import LaunchSpec

    proc = await launcher.launch(LaunchSpec(InstanceKey(1, name), command.argv, cwd=command.cwd))
    try:
        async with asyncio.timeout(60):
            init = await _exchange(
                proc,
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-06-18",
                        "capabilities": {},
                        "clientInfo": {"name": "gigmcp-tests", "version": "0"},
                    },
                },
            )
            await _exchange(proc, {"jsonrpc": "2.0", "method": "notifications/initialized"})
            tools = await _exchange(proc, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    finally:
        proc.kill()
        await proc.wait()
        await proc.cleanup()
    assert init is not None and tools is not None
    return {"initialize": init, "tools": tools}


def jail_can_read(path: Path) -> bool:
    """Whether another uid (a jail's) can reach ``path`` through every folder above it
    and read it."""
    through = all(os.stat(parent).st_mode & 0o001 for parent in path.parents)
    return through and bool(os.stat(path).st_mode & 0o004)
