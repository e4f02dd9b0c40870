"""The gateway runs under umask 077, so nothing it creates is readable by another user
unless it says so: what it installs for the jails must still be reachable by their uids,
through every folder the install created."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gigmcp.filemodes import UMASK
from gigmcp.packages import npm
from gigmcp.packages.spec import PackageSpec
from tests.support.packages import jail_can_read


@pytest.fixture
def gateway_umask() -> Iterator[None]:
    old = os.umask(UMASK)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("gateway_umask")
def test_an_npm_install_under_the_gateways_umask_is_reachable_by_the_jails(
    servers_dir: Path, npm_spec: PackageSpec, npm_source: npm.NpmSource
) -> None:
    # Folders the install has to create first, as a fresh GIG_PACKAGES_DIR/npm/<server>.
    where = servers_dir / "npm" / "memory" / "0123456789abcdef"
    installed = npm.install(npm_spec, where, "memory", npm_source)
    assert jail_can_read(installed.entrypoint)
    for folder in (servers_dir / "npm", servers_dir / "npm" / "memory", where):
        assert os.stat(folder).st_mode & 0o777 == 0o755, folder
