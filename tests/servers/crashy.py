"""A small real MCP server (Python SDK 2.x, dual-era) for lifecycle tests.

Tools: ``echo`` answers at once, ``slow`` sleeps, ``crash`` kills the process mid-call,
``pid`` tells which process answered, ``hog`` eats memory until killed. It writes a line to stderr at start.
"""

import asyncio
import os
import sys
from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

server = MCPServer("crashy")


@server.tool()
def echo(text: str) -> str:
    return text


@server.tool()
async def slow(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "slept"


@server.tool()
async def watched(seconds: float, marker: str) -> str:
    """Sleeps; says on stderr when it started and when it was cancelled, so tests can
    wait for the call to be under way and see cancellation arrive."""
    sys.stderr.write(f"crashy: watching {marker}\n")
    sys.stderr.flush()
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        sys.stderr.write(f"crashy: cancelled {marker}\n")
        sys.stderr.flush()
        raise
    return "finished"


@server.tool()
def regional(
    region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})], query: str
) -> str:
    """A tool whose ``region`` argument clients mirror into ``Mcp-Param-Region``."""
    return f"{region}:{query}"


@server.tool()
def crash() -> str:
    sys.stderr.write("crashy: crashing on purpose\n")
    sys.stderr.flush()
    os._exit(3)


@server.tool()
def hog() -> str:
    """Allocates memory until something stops it (in a jail: the cgroup's OOM killer)."""
    held = []
    while True:
        block = bytearray(16 << 20)
        block[::4096] = b"x" * len(block[::4096])
        held.append(block)


@server.tool()
def trace(ctx: Context) -> str:
    """The W3C trace context this request arrived with (its ``_meta.traceparent``)."""
    meta = ctx.request_context.meta or {}
    return str(meta.get("traceparent"))


@server.tool()
def caps(ctx: Context) -> str:
    """The client capabilities this request arrived with, as JSON."""
    declared = ctx.client_capabilities
    return declared.model_dump_json(exclude_none=True) if declared is not None else "null"


@server.tool()
def pid() -> str:
    return str(os.getpid())


if __name__ == "__main__":
    sys.stderr.write(f"crashy: started pid {os.getpid()}\n")
    sys.stderr.flush()
    server.run()
