"""Fixtures: the real registry (plain, and behind the token challenge), a cache, options.

The registries are session-wide (each start costs a process); they are stopped and
their folders removed even when tests fail. Without Debian's ``docker-registry`` the
tests that need it are skipped with one line.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gigmcp.packages.oci.cache import ImageCache
from tests.support.oci_images import Pusher
from tests.support.oci_pull import CacheBox
from tests.support.oci_registry import (
    RunningRegistry,
    TokenServer,
    binary_available,
    start_registry,
    stop_registry,
)

_repo_numbers = itertools.count(1)


def _need_registry() -> None:
    if not binary_available():
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")


@pytest.fixture(scope="session")
def registry() -> Iterator[RunningRegistry]:
    _need_registry()
    running = start_registry()
    try:
        yield running
    finally:
        stop_registry(running)


@pytest.fixture(scope="session")
def token_registry() -> Iterator[RunningRegistry]:
    _need_registry()
    running = start_registry(TokenServer)
    try:
        yield running
    finally:
        stop_registry(running)


@pytest.fixture(scope="session")
def pusher(registry: RunningRegistry) -> Iterator[Pusher]:
    p = Pusher(registry.url)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def repo(request: pytest.FixtureRequest) -> str:
    """A repository of its own for each test (names are lowercase, '-' separated)."""
    stem = "".join(c if c.isalnum() else "-" for c in request.node.name.lower()).strip("-")
    stem = "-".join(filter(None, stem.split("-")))[:60].strip("-")
    return f"gig/{stem}-{next(_repo_numbers)}"


@pytest.fixture
def box() -> Iterator[CacheBox]:
    # Not under pytest's tmp dir: the jail's user must be able to reach an image root.
    root = Path(tempfile.mkdtemp(prefix="gig-oci-cache-"))
    os.chmod(root, 0o755)
    try:
        yield CacheBox(ImageCache(root / "cache"), root / "cache")
    finally:
        shutil.rmtree(root, ignore_errors=True)
