"""PyPI installs with the real pip: a real MCP server and its whole dependency closure,
each wheel pinned by its real sha256, installed offline from the wheelhouse that
scripts/bootstrap downloaded, run in the real jail; tampered hashes, an incomplete lock
and source distributions refused with nothing left."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest

from gigmcp.packages import pypi
from gigmcp.packages.spec import (
    RECORD,
    Installation,
    LockEntry,
    PackageInstallError,
    PackageSpec,
    SpecError,
    redact,
    sha256_of,
)
from gigmcp.sandbox import runtime
from tests.support.packages import flip, jail_can_read, leftovers, mcp_tools_in_jail

TIME_TOOLS = {"get_current_time", "convert_time"}


@pytest.fixture(scope="module")
def time_server(
    module_servers_dir: Path, pypi_spec: PackageSpec, pypi_source: pypi.PypiSource
) -> Installation:
    return pypi.install(pypi_spec, module_servers_dir, "time", pypi_source)


def test_the_real_server_and_its_locked_closure_are_installed(
    time_server: Installation, module_servers_dir: Path, pypi_spec: PackageSpec
) -> None:
    root = module_servers_dir / "time" / "2026.10.19"
    assert time_server.root == root
    assert os.listdir(module_servers_dir / "time") == ["2026.10.19"]
    assert sorted(os.listdir(root)) == [RECORD, "venv"]
    assert time_server.entrypoint == root / "venv" / "bin" / "mcp-server-time"
    # pip wrote the staging path into the script; it names the final one now.
    assert time_server.entrypoint.read_text().startswith(f"#!{root}/venv/bin/python\n")
    # Exactly the locked distributions, and no pip (the environment is --without-pip).
    site = next(root.glob("venv/lib/python3*/site-packages"))
    installed = dict(d.name.removesuffix(".dist-info").split("-") for d in site.glob("*.dist-info"))
    installed = {pypi.canonical_name(k): v for k, v in installed.items()}
    expected = {pypi.canonical_name(e.identifier): e.version for e in pypi_spec.lock}
    expected["mcp-server-time"] = "2026.10.19"
    assert installed == expected
    assert "pip" not in installed
    record = json.loads((root / RECORD).read_text())
    assert record["spec"]["integrity"] == pypi_spec.integrity
    assert record["entrypoint"] == "venv/bin/mcp-server-time"


def test_the_environment_is_made_from_the_system_python_and_readable_by_the_jails(
    time_server: Installation,
) -> None:
    cfg = (time_server.root / "venv" / "pyvenv.cfg").read_text()
    assert "home = /usr/bin" in cfg
    assert jail_can_read(time_server.entrypoint)
    for dirpath, dirs, files in os.walk(time_server.root):
        for name in dirs + files:
            mode = os.lstat(os.path.join(dirpath, name)).st_mode
            if not stat.S_ISLNK(mode):
                assert mode & 0o022 == 0 and mode & 0o004, os.path.join(dirpath, name)


def test_the_command_runs_the_console_script_with_the_environments_python(
    time_server: Installation,
) -> None:
    command = pypi.launch_command(time_server.root)
    assert command == time_server.command
    venv = time_server.root / "venv"
    assert command.argv == (str(venv / "bin" / "python"), str(venv / "bin" / "mcp-server-time"))
    assert command.cwd is None
    plan = runtime.plan(command.argv, command.cwd)
    assert plan.kind == "python"
    assert str(venv) in plan.ro_paths
    assert os.path.realpath("/usr/bin/python3") in plan.ro_paths


def test_installing_the_same_spec_again_changes_nothing(
    time_server: Installation, module_servers_dir: Path, pypi_spec: PackageSpec, tmp_path: Path
) -> None:
    before = (time_server.root / RECORD).stat().st_mtime_ns
    # An empty wheelhouse and no index: any attempt to fetch again would fail.
    nothing = pypi.PypiSource(no_index=True, find_links=(str(tmp_path),))
    again = pypi.install(pypi_spec, module_servers_dir, "time", nothing)
    assert again == time_server
    assert (time_server.root / RECORD).stat().st_mtime_ns == before


@pytest.mark.root
async def test_the_installed_server_answers_mcp_inside_the_jail(
    time_server: Installation, jail: Any
) -> None:
    result = await mcp_tools_in_jail(jail, "time", time_server.command)
    assert result["initialize"]["result"]["serverInfo"]["name"] == "mcp-time"
    names = {t["name"] for t in result["tools"]["result"]["tools"]}
    assert names >= TIME_TOOLS


def test_a_flipped_hash_of_the_package_is_refused_and_leaves_nothing(
    servers_dir: Path, pypi_spec: PackageSpec, pypi_source: pypi.PypiSource
) -> None:
    bad = dataclasses.replace(pypi_spec, integrity=flip(pypi_spec.integrity))
    with pytest.raises(PackageInstallError) as caught:
        pypi.install(bad, servers_dir, "time", pypi_source)
    assert str(caught.value) == (
        "integrity mismatch for mcp-server-time==2026.10.19: "
        f"expected {bad.integrity}, got {pypi_spec.integrity}"
    )
    assert leftovers(servers_dir) == []


def test_a_lock_entry_with_a_wrong_hash_is_refused_and_leaves_nothing(
    servers_dir: Path, pypi_spec: PackageSpec, pypi_source: pypi.PypiSource
) -> None:
    core = next(e for e in pypi_spec.lock if e.identifier == "pydantic-core")
    tampered = LockEntry(core.identifier, core.version, flip(core.integrity))
    lock = tuple(tampered if e == core else e for e in pypi_spec.lock)
    with pytest.raises(PackageInstallError) as caught:
        pypi.install(dataclasses.replace(pypi_spec, lock=lock), servers_dir, "time", pypi_source)
    assert str(caught.value) == (
        f"integrity mismatch for pydantic-core=={core.version}: "
        f"expected {tampered.integrity}, got {core.integrity}"
    )
    assert leftovers(servers_dir) == []


def test_a_lock_missing_a_dependency_is_refused_and_leaves_nothing(
    servers_dir: Path, pypi_spec: PackageSpec, pypi_source: pypi.PypiSource
) -> None:
    lock = tuple(e for e in pypi_spec.lock if e.identifier != "tzdata")
    with pytest.raises(PackageInstallError) as caught:
        pypi.install(dataclasses.replace(pypi_spec, lock=lock), servers_dir, "time", pypi_source)
    message = str(caught.value)
    assert message.startswith(
        "the lock of mcp-server-time==2026.10.19 is not its whole dependency closure: "
    )
    assert "requires tzdata, which is not installed" in message
    assert leftovers(servers_dir) == []


def test_a_version_missing_from_the_index_fails_cleanly(
    servers_dir: Path, pypi_spec: PackageSpec, pypi_source: pypi.PypiSource
) -> None:
    absent = dataclasses.replace(pypi_spec, version="2020.1.1")
    with pytest.raises(
        PackageInstallError, match=r"^cannot fetch mcp-server-time==2020\.1\.1: no wheel"
    ):
        pypi.install(absent, servers_dir, "time", pypi_source)
    assert leftovers(servers_dir) == []


def _sdist(folder: Path, marker: Path) -> Path:
    """A source distribution whose setup.py leaves a mark if anything ever runs it."""
    setup = (
        f"open({str(marker)!r}, 'w').write('built')\n"
        "from setuptools import setup\nsetup(name='gigmcp-sdist', version='1.0')\n"
    )
    pkg_info = "Metadata-Version: 2.1\nName: gigmcp-sdist\nVersion: 1.0\n"
    path = folder / "gigmcp-sdist-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in {"setup.py": setup, "PKG-INFO": pkg_info}.items():
            data = text.encode()
            info = tarfile.TarInfo(f"gigmcp-sdist-1.0/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_a_source_distribution_is_refused_and_never_built(
    servers_dir: Path, tmp_path: Path
) -> None:
    index = tmp_path / "index"
    index.mkdir()
    marker = tmp_path / "setup-py-ran"
    sdist = _sdist(index, marker)
    # Pinned by its true hash: the refusal is about what it is, not about its bytes.
    spec = PackageSpec("pypi", "gigmcp-sdist", "1.0", sha256_of(sdist))
    source = pypi.PypiSource(no_index=True, find_links=(str(index),))
    with pytest.raises(PackageInstallError) as caught:
        pypi.install(spec, servers_dir, "sdist", source)
    assert str(caught.value) == (
        "cannot fetch gigmcp-sdist==1.0: no wheel of gigmcp-sdist==1.0 for this Python and "
        "platform (source distributions are refused: building one runs the package's code "
        "at install time)"
    )
    assert not marker.exists()
    assert leftovers(servers_dir) == []


def test_a_server_python_the_jails_cannot_use_is_reported(
    servers_dir: Path, pypi_spec: PackageSpec
) -> None:
    source = pypi.PypiSource(python="/nonexistent/python3")
    with pytest.raises(
        PackageInstallError, match="no Python to build the environment from: /nonex"
    ):
        pypi.install(pypi_spec, servers_dir, "time", source)
    assert leftovers(servers_dir) == []


# --- the requirements file and what a spec may say ----------------------------------------

H1, H2, H3 = ("sha256:" + c * 64 for c in "abc")


def test_the_requirements_file_pins_every_distribution_and_nothing_else() -> None:
    spec = PackageSpec(
        "pypi", "mcp-server-time", "1.0", H1,
        (LockEntry("Typing_Extensions", "4.0", H2), LockEntry("typing-extensions", "4.0", H3)),
    )  # fmt: skip
    # One wheel per platform: the same pin with each file's hash, any of which may match.
    assert pypi.requirements(spec) == (
        f"mcp-server-time==1.0 --hash={H1}\nTyping_Extensions==4.0 --hash={H2} --hash={H3}\n"
    )
    assert pypi.requirements(spec, with_hashes=False) == (
        "mcp-server-time==1.0\nTyping_Extensions==4.0\n"
    )


def test_a_lock_pinning_one_name_at_two_versions_is_refused() -> None:
    spec = PackageSpec(
        "pypi", "x", "1.0", H1, (LockEntry("anyio", "4.0", H2), LockEntry("AnyIO", "4.1", H3))
    )
    with pytest.raises(SpecError, match=r"lock of x==1\.0 pins AnyIO twice: 4\.0 and 4\.1"):
        pypi.requirements(spec)


@pytest.mark.parametrize(
    ("identifier", "version", "integrity", "message"),
    [
        ("mcp-server-time", ">=1.0", H1, "version '>=1.0' of mcp-server-time is not an exact"),
        ("mcp-server-time", "1.0 --index-url http://evil", H1, "is not an exact version"),
        ("mcp --index-url http://evil", "1.0", H1, "is not a valid pypi package name"),
        ("mcp\n--trusted-host=evil", "1.0", H1, "is not a valid pypi package name"),
        ("mcp", "1.0", "sha256:" + "A" * 64, "must be sha256:<64 lowercase hex digits>"),
        ("mcp", "1.0", "md5:" + "0" * 32, "must be sha256:"),
        ("mcp", "1.0", "sha256:" + "0" * 64 + " --hash=sha256:x", "must be sha256:"),
    ],
)
def test_a_spec_that_could_say_more_than_one_exact_pin_is_refused(
    identifier: str, version: str, integrity: str, message: str
) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        PackageSpec("pypi", identifier, version, integrity)


def test_an_npm_spec_is_not_installed_by_pip(servers_dir: Path) -> None:
    spec = PackageSpec("npm", "left-pad", "1.0.0", "sha512-" + "A" * 86 + "==")
    with pytest.raises(
        PackageInstallError, match=r"left-pad@1\.0\.0 is an npm package, not a PyPI one"
    ):
        pypi.install(spec, servers_dir, "x")


def test_credentials_in_an_index_url_never_reach_an_error() -> None:
    text = "ERROR: could not fetch https://build:t0ken@mirror.example/simple/mcp/ (timeout)"
    assert redact(text) == "ERROR: could not fetch https://***@mirror.example/simple/mcp/ (timeout)"
