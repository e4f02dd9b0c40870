"""Helpers of the npm and PyPI installer tests: the locks and offline sources, a small npm
registry, and an MCP handshake with a server in the real jail.

``NPM_LOCK`` and ``PYPI_LOCK`` are the locks in tests/packages; ``NPM_CACHE`` and
``WHEELHOUSE`` the offline sources scripts/bootstrap prepared from the real registries
(under tests/peers). :class:`LocalRegistry` is what the ``local_registry`` fixture serves
on loopback; ``mcp_tools_in_jail`` completes ``initialize`` and ``tools/list`` with a
server the real jail started. The fixtures themselves are in tests/packages/conftest.py.
It must never download anything.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gigmcp.packages.spec import LaunchCommand, LockEntry

ROOT = Path(__file__).resolve().parents[2]
NPM_LOCK = ROOT / "tests" / "packages" / "npm-lock.json"
PYPI_LOCK = ROOT / "tests" / "packages" / "pypi-lock.txt"
NPM_CACHE = ROOT / "tests" / "peers" / "npm-cache"
WHEELHOUSE = ROOT / "tests" / "peers" / "wheelhouse"


def read_pypi_lock() -> list[LockEntry]:
    entries = []
    for line in PYPI_LOCK.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        requirement, digest = line.split(" --hash=")
        name, version = requirement.split("==")
        entries.append(LockEntry(name, version, digest.strip()))
    return entries


def flip(integrity: str) -> str:
    """The same hash with one character changed, still well-formed (the character is
    inside the digest, clear of any base64 padding)."""
    i = len(integrity) - 5
    if integrity.startswith("sha256:"):
        new = "0" if integrity[i] != "0" else "1"
    else:
        new = "B" if integrity[i] != "B" else "C"
    return integrity[:i] + new + integrity[i + 1 :]


def leftovers(servers_dir: Path) -> list[str]:
    """Everything under ``servers_dir``: after a refused install, nothing at all."""
    return sorted(str(p.relative_to(servers_dir)) for p in servers_dir.rglob("*"))


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
