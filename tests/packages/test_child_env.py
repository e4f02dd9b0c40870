"""Attack: a secret in the gateway's environment reaches the tools an install runs (npm,
pip, ``python -m venv``), and whatever they run in turn.

Each install is run for real through the installer's own code path, with a real child in
the place of npm or pip that writes down the environment it was given: the canary the
gateway holds must not be in it, the basics a tool needs must be."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gigmcp.packages import npm, pypi
from gigmcp.packages.spec import PackageInstallError, PackageSpec

CANARY = "GIG_TEST_CANARY_SECRET"
CANARY_VALUE = "canary-5e3b9d0c-never-in-a-child"
NPM_SPEC = PackageSpec("npm", "left-pad", "1.3.0", "sha512-" + "A" * 86 + "==")
PYPI_SPEC = PackageSpec("pypi", "mcp-server-time", "0.6.2", "sha256:" + "0" * 64)


def recorder(folder: Path) -> tuple[Path, Path]:
    """An executable that writes its environment to a file and fails (so the install
    stops there); returns (the executable, the file it writes)."""
    out = folder / "seen-env"
    tool = folder / "record-env"
    tool.write_text(f"#!/bin/sh\n/usr/bin/env > {out}\nexit 3\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return tool, out


def seen(out: Path) -> dict[str, str]:
    lines = out.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


@pytest.fixture
def canary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CANARY, CANARY_VALUE)
    monkeypatch.setenv("NPM_CONFIG_REGISTRY", "https://attacker.example/")
    monkeypatch.setenv("PIP_INDEX_URL", "https://attacker.example/simple")
    monkeypatch.setenv("PYTHONPATH", "/attacker")


def assert_minimal(env: dict[str, str]) -> None:
    text = "\n".join(f"{k}={v}" for k, v in env.items())
    assert CANARY not in env and CANARY_VALUE not in text
    for leaked in ("NPM_CONFIG_REGISTRY", "PIP_INDEX_URL", "PYTHONPATH"):
        assert leaked not in env, leaked
    assert env["PATH"] == os.environ["PATH"]
    assert env.get("HOME") == os.environ.get("HOME")


@pytest.mark.usefixtures("canary")
def test_attack_npm_never_sees_the_gateways_environment(tmp_path: Path) -> None:
    tool, out = recorder(tmp_path)
    with pytest.raises(PackageInstallError, match="npm failed"):
        npm.install(NPM_SPEC, tmp_path / "servers", "pad", npm.NpmSource(npm=str(tool)))
    assert_minimal(seen(out))


@pytest.mark.usefixtures("canary")
def test_attack_pip_never_sees_the_gateways_environment(tmp_path: Path) -> None:
    # The environment is made by the real Python; pip is the recorder.
    tool, out = recorder(tmp_path)
    source = pypi.PypiSource(no_index=True, find_links=(str(tmp_path),), pip=(str(tool),))
    with pytest.raises(PackageInstallError, match="cannot fetch"):
        pypi.install(PYPI_SPEC, tmp_path / "servers", "time", source)
    assert_minimal(seen(out))


@pytest.mark.usefixtures("canary")
def test_attack_the_python_that_makes_the_environment_never_sees_it(tmp_path: Path) -> None:
    tool, out = recorder(tmp_path)
    with pytest.raises(PackageInstallError, match="cannot create the environment"):
        pypi.install(PYPI_SPEC, tmp_path / "servers", "time", pypi.PypiSource(python=str(tool)))
    assert_minimal(seen(out))
