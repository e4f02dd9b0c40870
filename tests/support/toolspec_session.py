"""The toolspec engine as the jail starts it, and an MCP session with it.

``jail_command`` is the interpreter with ``-I -S`` (no environment-driven paths, no
site-packages, so only the standard library) on the engine's package folder
(``ENGINE_DIR``) and an input file; ``write_input`` writes one; ``engine_session`` is an
initialized session of the official Python SDK's stdio client with the engine run as a
real subprocess, its stderr appended to ``engine.stderr`` in the test's folder.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

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
