"""A fast MCP server for the benchmark, on the official Python SDK 2.x low-level server.

Owns one tool family: ``blob(size, nonce)`` answers a text result of exactly ``size``
bytes that starts and ends with ``nonce`` (so a load generator can prove the answer is
its own and arrived whole), plus ``--tools N`` extra no-op tools for the tools/list
workload. It speaks both protocol eras because the SDK's server loop is dual-era.

It serves stdio by default, or the SDK's own Streamable HTTP transport with
``--http HOST:PORT`` (the "SDK-native" baseline arm). It must never do work the
benchmark did not ask for: no logging per call, no sleeps.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel.server import Server

MAX_SIZE = 8 * 1024 * 1024
BLOB_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "size": {"type": "integer", "minimum": 0, "maximum": MAX_SIZE},
        "nonce": {"type": "string"},
    },
    "required": ["size", "nonce"],
}
NOOP_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"x": {"type": "string"}}}


def blob_text(size: int, nonce: str) -> str:
    """``nonce`` + filler + ``nonce``, exactly ``size`` bytes (ASCII), or an error."""
    if not nonce.isascii() or not nonce.isalnum():
        raise ValueError("nonce must be ASCII letters and digits")
    if size < 2 * len(nonce) or size > MAX_SIZE:
        raise ValueError(f"size must be between {2 * len(nonce)} and {MAX_SIZE}")
    return nonce + "x" * (size - 2 * len(nonce)) + nonce


def build_tools(extra: int, prefix: str) -> list[types.Tool]:
    tools = [
        types.Tool(
            name="blob",
            description="Answer a text result of exactly `size` bytes that embeds `nonce`.",
            input_schema=BLOB_SCHEMA,
        )
    ]
    # Descriptions of realistic length: tools/list cost scales with the bytes listed.
    tools.extend(
        types.Tool(
            name=f"{prefix}{i:04d}",
            description=f"No-op tool number {i} of {extra}, listed to weigh tools/list. " * 2,
            input_schema=NOOP_SCHEMA,
        )
        for i in range(extra)
    )
    return tools


def build_server(name: str, extra_tools: int, prefix: str) -> Server[Any]:
    tools = build_tools(extra_tools, prefix)
    listing = types.ListToolsResult(tools=tools)

    async def list_tools(
        ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return listing

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        args = params.arguments or {}
        if params.name == "blob":
            try:
                text = blob_text(int(args["size"]), str(args["nonce"]))
            except (KeyError, TypeError, ValueError) as exc:
                return types.CallToolResult(
                    content=[types.TextContent(type="text", text=f"bad arguments: {exc}")],
                    is_error=True,
                )
            return types.CallToolResult(content=[types.TextContent(type="text", text=text)])
        if params.name.startswith(prefix):
            return types.CallToolResult(content=[types.TextContent(type="text", text="ok")])
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=f"unknown tool {params.name}")],
            is_error=True,
        )

    server: Server[Any] = Server(
        name, version="1.0.0", on_list_tools=list_tools, on_call_tool=call_tool
    )
    # Tracing middleware is a no-op without an exporter, but it is still a per-call hop;
    # the benchmark measures the transport, so the server carries nothing optional.
    server.middleware = []
    return server


async def serve_stdio(server: Server[Any]) -> None:
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def serve_http(server: Server[Any], listen: str) -> None:
    import uvicorn

    host, _, port = listen.rpartition(":")
    app = server.streamable_http_app(host=host)
    uvicorn.run(
        app,
        host=host,
        port=int(port),
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="fast", help="server name reported to clients")
    parser.add_argument("--tools", type=int, default=0, help="extra no-op tools to list")
    parser.add_argument("--prefix", default="noop", help="name prefix of the extra tools")
    parser.add_argument("--http", metavar="HOST:PORT", help="serve Streamable HTTP, not stdio")
    args = parser.parse_args(argv)
    server = build_server(args.name, args.tools, args.prefix)
    if args.http:
        serve_http(server, args.http)
    else:
        anyio.run(serve_stdio, server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
