"""Fixtures for the toolspec engine's tests: PKI, upstream, tunnel, and an MCP session
with the engine run as a real subprocess by the official Python SDK's stdio client.

The engine is started the way the jail starts it: the interpreter with ``-I -S`` (no
environment-driven paths, no site-packages, so only the standard library) on the
package folder itself (tests/support/toolspec_session.py). Its stderr goes to a file the
tests can read.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.toolspec_lab import Pki, Upstream, make_ca, start_upstream


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_ca(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def upstream_server(pki: Pki) -> Iterator[Upstream]:
    upstream = start_upstream(pki)
    yield upstream
    upstream.server.shutdown()
    upstream.server.server_close()


@pytest.fixture
def upstream(upstream_server: Upstream) -> Upstream:
    upstream_server.clear()
    return upstream_server
