"""npm installs with the real npm: a real MCP server pinned by its real integrity and
dependency lock, installed offline from the cache scripts/bootstrap filled, run in the real
jail; tampered hashes and locks refused with nothing left; install scripts never run."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from gigmcp.packages import npm
from gigmcp.packages.spec import (
    RECORD,
    Installation,
    LockEntry,
    PackageInstallError,
    PackageSpec,
    SpecError,
)
from gigmcp.sandbox import runtime
from tests.support.packages import (
    LocalRegistry,
    flip,
    jail_can_read,
    leftovers,
    mcp_tools_in_jail,
)

MEMORY_TOOLS = {"create_entities", "read_graph", "search_nodes", "delete_entities"}


@pytest.fixture(scope="module")
def memory(
    module_servers_dir: Path, npm_spec: PackageSpec, npm_source: npm.NpmSource
) -> Installation:
    return npm.install(npm_spec, module_servers_dir, "memory", npm_source)


def test_the_real_server_is_installed_in_its_own_folder(
    memory: Installation, module_servers_dir: Path, npm_spec: PackageSpec
) -> None:
    assert memory.root == module_servers_dir / "memory" / "2026.8.31"
    # Only the final folder: the staging folder and the downloaded tarball are gone.
    assert os.listdir(module_servers_dir / "memory") == ["2026.8.31"]
    assert sorted(os.listdir(memory.root)) == [
        RECORD,
        "node_modules",
        "package-lock.json",
        "package.json",
    ]
    assert memory.entrypoint == (
        memory.root / "node_modules/@modelcontextprotocol/server-memory/dist/index.js"
    )
    record = json.loads((memory.root / RECORD).read_text())
    assert record["spec"]["integrity"] == npm_spec.integrity
    assert record["entrypoint"] == "node_modules/@modelcontextprotocol/server-memory/dist/index.js"
    # What npm installed is exactly the lock: 95 distinct packages besides the server.
    tree = json.loads((memory.root / "node_modules/.package-lock.json").read_text())
    installed = {
        (m.get("name") or p.rsplit("node_modules/", 1)[1], m["version"], m["integrity"])
        for p, m in tree["packages"].items()
        if p and p != "node_modules/@modelcontextprotocol/server-memory"
    }
    assert installed == {(e.identifier, e.version, e.integrity) for e in npm_spec.lock}


def test_the_install_is_readable_by_the_jails_and_writable_by_nobody_else(
    memory: Installation,
) -> None:
    assert jail_can_read(memory.entrypoint)
    for dirpath, dirs, files in os.walk(memory.root):
        for name in dirs + files:
            mode = os.lstat(os.path.join(dirpath, name)).st_mode
            if not stat.S_ISLNK(mode):
                assert mode & 0o022 == 0, os.path.join(dirpath, name)
                assert mode & 0o004, os.path.join(dirpath, name)


def test_the_command_runs_the_hosts_node_on_the_bin_and_plans_a_jail(
    memory: Installation,
) -> None:
    command = npm.launch_command(memory.root)
    assert command == memory.command
    assert os.path.isabs(command.argv[0]) and os.path.basename(command.argv[0]) == "node"
    assert command.argv[1:] == (str(memory.entrypoint),)
    assert command.cwd is None  # the jail's own writable home
    plan = runtime.plan(command.argv, command.cwd)
    assert plan.kind == "node"
    assert str(memory.root / "node_modules") in plan.ro_paths
    assert command.argv[0] in plan.ro_paths


def test_installing_the_same_spec_again_changes_nothing(
    memory: Installation, module_servers_dir: Path, npm_spec: PackageSpec
) -> None:
    before = (memory.root / RECORD).stat().st_mtime_ns
    # An empty, offline cache: any attempt to fetch again would fail.
    again = npm.install(
        npm_spec,
        module_servers_dir,
        "memory",
        npm.NpmSource(cache=str(module_servers_dir / "no-cache"), offline=True),
    )
    assert again == memory
    assert (memory.root / RECORD).stat().st_mtime_ns == before


def test_another_package_in_the_same_place_is_refused(
    memory: Installation, module_servers_dir: Path, npm_spec: PackageSpec
) -> None:
    other = dataclasses.replace(npm_spec, lock=npm_spec.lock[1:])
    with pytest.raises(PackageInstallError, match="already holds a different install: remove it"):
        npm.install(other, module_servers_dir, "memory")


@pytest.mark.root
async def test_the_installed_server_answers_mcp_inside_the_jail(
    memory: Installation, jail: Any
) -> None:
    result = await mcp_tools_in_jail(jail, "memory", memory.command)
    info = result["initialize"]["result"]["serverInfo"]
    assert info["name"] == "memory-server"
    names = {t["name"] for t in result["tools"]["result"]["tools"]}
    assert names >= MEMORY_TOOLS


def test_a_flipped_integrity_is_refused_before_install_and_leaves_nothing(
    servers_dir: Path, npm_spec: PackageSpec, npm_source: npm.NpmSource
) -> None:
    bad = dataclasses.replace(npm_spec, integrity=flip(npm_spec.integrity))
    with pytest.raises(PackageInstallError) as caught:
        npm.install(bad, servers_dir, "memory", npm_source)
    assert str(caught.value) == (
        "integrity mismatch for @modelcontextprotocol/server-memory@2026.8.31: "
        f"expected {bad.integrity}, got {npm_spec.integrity}"
    )
    assert leftovers(servers_dir) == []


def test_a_lock_entry_with_a_wrong_hash_is_refused_and_leaves_nothing(
    servers_dir: Path, npm_spec: PackageSpec, npm_source: npm.NpmSource
) -> None:
    zod = next(e for e in npm_spec.lock if e.identifier == "zod")
    tampered = LockEntry(zod.identifier, zod.version, flip(zod.integrity))
    lock = tuple(tampered if e == zod else e for e in npm_spec.lock)
    with pytest.raises(PackageInstallError) as caught:
        npm.install(dataclasses.replace(npm_spec, lock=lock), servers_dir, "memory", npm_source)
    assert str(caught.value) == (
        "dependencies of @modelcontextprotocol/server-memory@2026.8.31 do not match its lock: "
        f"integrity mismatch for zod@{zod.version}: expected {tampered.integrity}, "
        f"got {zod.integrity}"
    )
    assert leftovers(servers_dir) == []


def test_a_dependency_the_lock_does_not_name_is_refused(
    servers_dir: Path, npm_spec: PackageSpec, npm_source: npm.NpmSource
) -> None:
    lock = tuple(e for e in npm_spec.lock if e.identifier != "express")
    with pytest.raises(
        PackageInstallError, match=r"do not match its lock: express@5\.3\.0 is not in"
    ):
        npm.install(dataclasses.replace(npm_spec, lock=lock), servers_dir, "memory", npm_source)
    assert leftovers(servers_dir) == []


def test_an_unreachable_package_fails_cleanly_and_keeps_registry_credentials_out(
    servers_dir: Path, npm_spec: PackageSpec, tmp_path: Path
) -> None:
    # An operator's mirror, with credentials in its URL, and nothing cached from it.
    source = npm.NpmSource(
        registry="http://mirror-user:s3cret-token@127.0.0.1:9/",
        cache=str(tmp_path / "empty-cache"),
        offline=True,
    )
    with pytest.raises(PackageInstallError) as caught:
        npm.install(npm_spec, servers_dir, "memory", source)
    message = str(caught.value)
    assert message.startswith("cannot fetch @modelcontextprotocol/server-memory@2026.8.31: npm")
    assert "ENOTCACHED" in message and "127.0.0.1:9" in message
    assert "s3cret" not in message and "mirror-user" not in message
    assert leftovers(servers_dir) == []


# --- packages the tests write, from a registry on loopback --------------------------------


def _scripts(marks: Path, who: str) -> dict[str, str]:
    return {
        stage: f"touch {marks}/{who}-{stage}"
        for stage in ("preinstall", "install", "postinstall", "prepare", "prepack")
    }


def test_install_scripts_never_run_for_the_package_or_its_dependencies(
    servers_dir: Path, local_registry: LocalRegistry, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    dep = {"name": "gigmcp-scripted-dep", "version": "1.0.0", "scripts": _scripts(marks, "dep")}
    dep_sri = local_registry.publish(dep, {"index.js": "module.exports = 1;\n"})
    top = {
        "name": "gigmcp-scripted",
        "version": "1.0.0",
        "bin": {"gigmcp-scripted": "index.js"},
        "dependencies": {"gigmcp-scripted-dep": "^1.0.0"},
        "scripts": _scripts(marks, "top"),
    }
    top_sri = local_registry.publish(top, {"index.js": "#!/usr/bin/env node\n"})
    spec = PackageSpec(
        "npm", "gigmcp-scripted", "1.0.0", top_sri,
        (LockEntry("gigmcp-scripted-dep", "1.0.0", dep_sri),),
    )  # fmt: skip
    source = npm.NpmSource(registry=local_registry.url, cache=str(tmp_path / "cache"))
    installed = npm.install(spec, servers_dir, "scripted", source)
    assert installed.entrypoint.name == "index.js"
    assert (installed.root / "node_modules/gigmcp-scripted-dep/index.js").is_file()
    assert os.listdir(marks) == []


def test_a_package_without_a_bin_is_refused(
    servers_dir: Path, local_registry: LocalRegistry, tmp_path: Path
) -> None:
    integrity = local_registry.publish(
        {"name": "gigmcp-nobin", "version": "1.0.0", "main": "index.js"},
        {"index.js": "module.exports = 1;\n"},
    )
    spec = PackageSpec("npm", "gigmcp-nobin", "1.0.0", integrity)
    source = npm.NpmSource(registry=local_registry.url, cache=str(tmp_path / "cache"))
    with pytest.raises(
        PackageInstallError, match=r"gigmcp-nobin@1\.0\.0 declares no bin in its package"
    ):
        npm.install(spec, servers_dir, "nobin", source)
    assert leftovers(servers_dir) == []


def test_attack_a_bin_pointing_out_of_the_package_is_refused(
    servers_dir: Path, local_registry: LocalRegistry, tmp_path: Path
) -> None:
    integrity = local_registry.publish(
        {"name": "gigmcp-escape", "version": "1.0.0", "bin": "../../../../../../etc/passwd"},
        {"index.js": "\n"},
    )
    spec = PackageSpec("npm", "gigmcp-escape", "1.0.0", integrity)
    source = npm.NpmSource(registry=local_registry.url, cache=str(tmp_path / "cache"))
    with pytest.raises(
        PackageInstallError, match="its bin 'gigmcp-escape' is not a file inside the"
    ):
        npm.install(spec, servers_dir, "escape", source)
    assert leftovers(servers_dir) == []


def test_attack_a_tarball_of_another_name_is_refused(
    servers_dir: Path, local_registry: LocalRegistry, tmp_path: Path
) -> None:
    # The registry serves, for gigmcp-honest, a tarball whose package.json says
    # gigmcp-other; its integrity is what the spec pins, yet it is not that package.
    integrity = local_registry.publish(
        {"name": "gigmcp-honest", "version": "1.0.0", "bin": "index.js"}, {"index.js": "\n"}
    )
    other = local_registry.publish(
        {"name": "gigmcp-other", "version": "1.0.0", "bin": "index.js"}, {"index.js": "\n"}
    )
    del integrity
    honest = local_registry.packages["gigmcp-honest"]["versions"]["1.0.0"]
    honest["dist"] = local_registry.packages["gigmcp-other"]["versions"]["1.0.0"]["dist"]
    spec = PackageSpec("npm", "gigmcp-honest", "1.0.0", other)
    source = npm.NpmSource(registry=local_registry.url, cache=str(tmp_path / "cache"))
    with pytest.raises(
        PackageInstallError, match="the verified tarball is not the package gigmcp-honest"
    ):
        npm.install(spec, servers_dir, "honest", source)
    assert leftovers(servers_dir) == []


# --- what a spec may say ------------------------------------------------------------------

GOOD = "sha512-" + "A" * 86 + "=="


@pytest.mark.parametrize(
    ("identifier", "version", "integrity", "message"),
    [
        ("left-pad", "^1.0.0", GOOD, "version '^1.0.0' of left-pad is not an exact version"),
        ("left-pad", "latest", GOOD, "version 'latest' of left-pad is not an exact version"),
        ("left-pad", "file:../x", GOOD, "is not an exact version"),
        ("--registry=http://evil", "1.0.0", GOOD, "is not a valid npm package name"),
        ("Left-Pad", "1.0.0", GOOD, "'Left-Pad' is not a valid npm package name"),
        ("@scope/../x", "1.0.0", GOOD, "is not a valid npm package name"),
        ("left-pad", "1.0.0", "sha1-" + "A" * 27 + "=", "must be sha512-<base64 of 64 bytes>"),
        ("left-pad", "1.0.0", "sha256:" + "0" * 64, "must be sha512-"),
    ],
)
def test_a_spec_that_is_not_exact_is_refused(
    identifier: str, version: str, integrity: str, message: str
) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        PackageSpec("npm", identifier, version, integrity)


def test_a_lock_entry_is_held_to_the_same_rules() -> None:
    with pytest.raises(SpecError, match=r"lock: version '~2\.0\.0' of ms is not an exact"):
        PackageSpec("npm", "left-pad", "1.0.0", GOOD, (LockEntry("ms", "~2.0.0", GOOD),))


@pytest.mark.parametrize("name", ["../x", "Memory", "a/b", "", "-x", "x" * 70])
def test_a_server_name_that_is_not_one_folder_is_refused(servers_dir: Path, name: str) -> None:
    spec = PackageSpec("npm", "left-pad", "1.0.0", GOOD)
    with pytest.raises(SpecError, match="server name .* must be"):
        npm.install(spec, servers_dir, name)
    assert leftovers(servers_dir) == []
