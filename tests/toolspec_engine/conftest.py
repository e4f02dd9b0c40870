"""Fixtures for the toolspec engine's tests: PKI, upstream, tunnel, and an MCP session
with the engine run as a real subprocess by the official Python SDK's stdio client.

The engine is started the way the jail starts it: the interpreter with ``-I -S`` (no
environment-driven paths, no site-packages, so only the standard library) on the
package folder itself. Its stderr goes to a file the tests can read.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from tests.support.toolspec_lab import Pki, Upstream, make_ca, start_upstream

ROOT = Path(__file__).resolve().parents[2]
ENGINE_DIR = ROOT / "src" / "gigmcp" / "toolspec_engine"
_counter = itertools.count()


def jail_command(input_path: Path, engine_dir: Path = ENGINE_DIR) -> list[str]:
    return [sys.executable, "-I", "-S", str(engine_dir), str(input_path)]


def write_input(folder: Path, doc: dict[str, Any]) -> Path:
    path = folder / f"engine-input-{next(_counter)}.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


@asynccontextmanager
async def engine_session(
    doc: dict[str, Any],
    env: dict[str, str],
    folder: Path,
    command: list[str] | None = None,
) -> AsyncIterator[ClientSession]:
    """An initialized SDK session with an engine serving ``doc``."""
    path = write_input(folder, doc)
    argv = command or jail_command(path)
    if command is not None:
        argv = [a if a != "{input}" else str(path) for a in command]
    params = StdioServerParameters(command=argv[0], args=argv[1:], env=env)
    with (folder / "engine.stderr").open("a", encoding="utf-8") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session


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
