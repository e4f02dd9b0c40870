"""Ready-to-paste configuration for the MCP clients people connect to a profile with.

Owns a profile's endpoint URL and, for a freshly minted token, the configuration each
client documents for a remote Streamable HTTP server with a bearer token: the command
for Claude Code, the JSON for Cursor, VS Code and Claude Desktop (which reaches remote
servers through ``mcp-remote``), and the command for the MCP Inspector; and the text of
each as it is pasted. The REST API and the dashboard both hand these out, once, at
minting. It must never log, store or return a token anywhere but in the value it was
asked for (the caller shows that once and keeps nothing).
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

ENDPOINT_PREFIX = "/mcp/p/"
# The clients, in the order they are shown; the keys are the API's (TokenMinted.clients).
CLIENTS = ("claude_code", "cursor", "vscode", "claude_desktop", "inspector")
# mcp-remote accepts plain HTTP on its own only for these hosts (--allow-http otherwise).
_MCP_REMOTE_PLAIN_OK = frozenset({"localhost", "127.0.0.1"})


def endpoint(public_origin: str, slug: str) -> str:
    """The URL a client connects to for the profile ``slug``."""
    return f"{public_origin.rstrip('/')}{ENDPOINT_PREFIX}{slug}"


def server_name(slug: str) -> str:
    """The name the gateway's entry gets in a client's configuration."""
    return f"gigmcp-{slug}"


def for_clients(slug: str, url: str, token: str) -> dict[str, object]:
    """Each client's configuration, as each documents it, keyed as in :data:`CLIENTS`."""
    header = f"Bearer {token}"
    name = server_name(slug)
    return {
        "claude_code": f"claude mcp add --transport http {name} {url} "
        f'--header "Authorization: {header}"',
        "cursor": {"mcpServers": {name: {"url": url, "headers": {"Authorization": header}}}},
        "vscode": {
            "servers": {name: {"type": "http", "url": url, "headers": {"Authorization": header}}}
        },
        "claude_desktop": {"mcpServers": {name: claude_desktop(url, header)}},
        "inspector": f"npx @modelcontextprotocol/inspector --transport http --server-url {url} "
        f'--header "Authorization: {header}"',
    }


def claude_desktop(url: str, header: str) -> dict[str, object]:
    """Claude Desktop's claude_desktop_config.json runs local (stdio) servers only, so a
    remote one goes through mcp-remote. The header's value comes from ``env``, with no
    space in the argument itself: Claude Desktop on Windows does not quote arguments
    with spaces when it starts npx (mcp-remote's documented workaround). ``-y`` because
    nobody is there to answer npx's install question."""
    args = ["-y", "mcp-remote", url, "--header", "Authorization:${AUTH_HEADER}"]
    parts = urlsplit(url)
    if parts.scheme == "http" and parts.hostname not in _MCP_REMOTE_PLAIN_OK:
        # The gateway itself is served over plain HTTP here (the operator's choice); without
        # the flag mcp-remote refuses to start.
        args.append("--allow-http")
    return {"command": "npx", "args": args, "env": {"AUTH_HEADER": header}}


def pasteable(config: object) -> str:
    """The text to paste: a command as it is, a configuration file's JSON indented."""
    if isinstance(config, str):
        return config
    return json.dumps(config, indent=2)
