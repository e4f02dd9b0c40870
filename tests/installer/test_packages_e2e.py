"""A PyPI package from a signed index, end to end through the operator's commands: the
manifest's `packages` entry pins mcp-server-time and its whole closure by sha256,
`gigmcp server install` builds its own venv from the offline wheelhouse that
scripts/bootstrap prepared (the real pip, --require-hashes), and the official SDK client
calls its tool through the gateway, in the jail. A lock entry with a wrong hash installs
nothing."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.gateway import GatewayProc, gateway
from tests.support.mcp_client import connect, text_of
from tests.support.packages import WHEELHOUSE, flip, read_pypi_lock

pytestmark = pytest.mark.root


def time_manifest(version: str, broken: bool = False) -> dict[str, object]:
    entries = read_pypi_lock()
    main = next(e for e in entries if e.identifier == "mcp-server-time")
    lock = [
        {"identifier": e.identifier, "version": e.version, "integrity": e.integrity}
        for e in entries
        if e is not main
    ]
    if broken:
        lock[0]["integrity"] = flip(lock[0]["integrity"])
    return {
        "schemaVersion": 1,
        "name": "time",
        "version": version,
        "source": {"repo": "github.com/modelcontextprotocol/servers", "tag": "v1"},
        "tier": "sealed",
        "entitlements": {"egress": ["api.example.test"]},
        "tools": [{"name": "get_current_time", "default": True}],
        "packages": [
            {
                "registryType": "pypi",
                "identifier": main.identifier,
                "version": main.version,
                "integrity": main.integrity,
                "lock": lock,
            }
        ],
    }


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    if not (WHEELHOUSE / ".gigmcp-installed").exists():
        pytest.fail("tests/peers/wheelhouse is missing: run scripts/bootstrap")
    tmp: Path = tmp_path_factory.mktemp("pypi")
    packages = Path(tempfile.mkdtemp(prefix="gigpkg-"))
    os.chmod(packages, 0o755)
    root = tmp / "registry"
    for version, broken in (("1.0.0", False), ("1.0.1", True)):
        folder = root / "manifests" / "time"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{version}.yaml").write_text(yaml.safe_dump(time_manifest(version, broken)))
    try:
        with gateway(
            tmp, jailed=True, GIG_SANDBOX_SUBNET="10.214.2.0/24", GIG_SANDBOX_POOL="0",
            GIG_PACKAGES_DIR=str(packages), GIG_PYPI_FIND_LINKS=str(WHEELHOUSE),
            GIG_REGISTRY_INDEX_URL=f"file://{root / 'index.json'}",
        ) as g:  # fmt: skip
            pub = g.cli("registry", "keygen", "--out", str(root / "key")).stdout.strip()
            g.env["GIG_REGISTRY_PUBKEY"] = pub
            idx = str(root / "index.json")
            g.cli("registry", "build-index", str(root / "manifests"), "--out", idx)
            g.cli("registry", "sign", idx, "--key", str(root / "key"))
            g.packages = packages  # type: ignore[attr-defined]
            yield g
    finally:
        shutil.rmtree(packages, ignore_errors=True)


async def test_a_pypi_server_installs_from_its_hashes_and_answers_in_the_jail(
    gw: GatewayProc,
) -> None:
    out = gw.cli("server", "install", "time@1.0.0", "--yes")
    assert "mcp-server-time==" in out.stderr and "pypi" in out.stderr
    gw.profile("tp", "time")
    gw.start()
    try:
        async with connect(gw, "tp", "auto") as c:
            result = await c.call_tool("time_get_current_time", {"timezone": "UTC"})
        assert "UTC" in text_of(result)
    finally:
        gw.stop()


def test_attack_a_lock_entry_with_a_wrong_hash_installs_nothing(gw: GatewayProc) -> None:
    before = sorted(p.name for p in gw.packages.rglob("*"))  # type: ignore[attr-defined]
    out = gw.cli("server", "install", "time@1.0.1", "--name", "time2", "--yes", check=False)
    assert out.returncode == 1 and "time@1.0.1: not installed" in out.stderr
    assert "expected sha256:" in out.stderr or "hash" in out.stderr
    assert sorted(p.name for p in gw.packages.rglob("*")) == before  # type: ignore[attr-defined]
