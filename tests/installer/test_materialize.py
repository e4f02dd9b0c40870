"""From a verified manifest to a runnable server, per kind, without a gateway: the npm
server from the real offline cache (its lock checked), the folder per server and runtime,
what consent covers, and removal that never reaches outside the packages folder."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gigmcp.errors import InstallError
from gigmcp.installer.materialize import (
    Target,
    consent_hash,
    kind_of,
    materialize,
    remove_files,
)
from gigmcp.packages.spec import PackageInstallError
from gigmcp.registry.hashing import runtime_hash
from gigmcp.registry.manifest import Image, LockEntry, Manifest, Package
from gigmcp.sandbox import runtime
from tests.support.packages import NPM_CACHE, NPM_LOCK
from tests.support.registry_samples import good, replace


@pytest.fixture
def packages() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="gigpkg-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def npm_manifest() -> tuple[Manifest, str]:
    data = json.loads(NPM_LOCK.read_text())
    p = data["package"]
    lock = tuple(LockEntry(e["identifier"], e["version"], e["integrity"]) for e in data["lock"])
    package = Package("npm", p["identifier"], p["version"], p["integrity"], lock=lock)
    manifest = replace(good(), name="memory", version="1.0.0", image=Image(), packages=(package,))
    return manifest, data["before"]


def test_the_npm_server_of_a_manifest_is_installed_under_its_server_and_runtime(
    packages: Path,
) -> None:
    from gigmcp.packages.npm import NpmSource

    if not (NPM_CACHE / ".gigmcp-installed").exists():
        pytest.fail("tests/peers/npm-cache is missing: run scripts/bootstrap")
    manifest, before = npm_manifest()
    target = Target(packages, npm=NpmSource(cache=str(NPM_CACHE), offline=True, before=before))
    hashes = ("m" * 64, consent_hash(manifest, None))
    run = asyncio.run(materialize(manifest, None, hashes, target, "mem"))
    home = packages / "npm" / "mem" / hashes[1][:16]
    assert run.origin["kind"] == "npm" and run.origin["path"] == str(home)
    assert run.origin["runtime_hash"] == runtime_hash(manifest)
    assert run.egress == {"hosts": list(manifest.entitlements.egress), "ports": [443]}
    assert [c["id"] for c in run.credentials] == [c.id for c in manifest.credentials]
    # Node runs the package's bin, both by absolute path under the server's folder.
    assert run.command[0].endswith("node") and run.command[1].startswith(str(home))
    plan = runtime.plan(tuple(run.command), run.cwd)
    assert plan.kind == "node" and any(p.startswith(str(home)) for p in plan.ro_paths)
    # A second server from the same manifest gets a folder of its own.
    other = asyncio.run(materialize(manifest, None, hashes, target, "mem2"))
    assert other.origin["path"] != run.origin["path"]
    remove_files(run.origin, packages, {other.origin["path"]})
    assert not home.exists() and Path(other.origin["path"]).exists()
    assert not (packages / "npm" / "mem").exists(), "empty folders pruned"


def test_a_wrong_lock_hash_leaves_not_even_an_empty_folder(packages: Path) -> None:
    from gigmcp.packages.npm import NpmSource

    manifest, before = npm_manifest()
    (package,) = manifest.packages
    assert package.lock is not None
    bad = replace(package.lock[0], integrity="sha512-" + "A" * 86 + "==")
    broken = replace(manifest, packages=(replace(package, lock=(bad, *package.lock[1:])),))
    target = Target(packages, npm=NpmSource(cache=str(NPM_CACHE), offline=True, before=before))
    with pytest.raises(PackageInstallError, match="integrity|hash"):
        asyncio.run(materialize(broken, None, ("m" * 64, "r" * 64), target, "mem"))
    assert list((packages / "npm").rglob("*")) == [], "only the kind's own folder stays"


def test_what_kind_a_manifest_is() -> None:
    assert kind_of(good(), None) == "oci"
    toolpack = replace(good(), image=replace(good().image, builder="toolpack"))
    assert kind_of(toolpack, {"tools": []}) == "toolspec"
    with pytest.raises(InstallError, match="needs a packages entry"):
        kind_of(replace(good(), image=replace(good().image, builder="node")), None)


def test_consent_covers_a_toolspecs_content() -> None:
    m = good()
    spec = {"baseUrl": "https://chat.example.com", "tools": [{"name": "a", "path": "/a"}]}
    assert consent_hash(m, None) == runtime_hash(m)
    changed = {**spec, "tools": [{"name": "a", "path": "/admin/delete"}]}
    assert consent_hash(m, spec) != consent_hash(m, changed) != runtime_hash(m)
    assert consent_hash(m, spec) == consent_hash(m, dict(reversed(list(spec.items()))))


def test_removal_never_reaches_outside_the_packages_folder(tmp_path: Path) -> None:
    packages, outside = tmp_path / "packages", tmp_path / "precious"
    packages.mkdir()
    outside.mkdir()
    (outside / "keep").write_text("x")
    for path in (str(outside), str(packages / ".." / "precious"), "/"):
        remove_files({"kind": "npm", "path": path}, packages)
    assert (outside / "keep").exists()
