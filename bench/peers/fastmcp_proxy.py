"""FastMCP's proxy in front of a stdio server, for the benchmark's FastMCP arm.

Runs with the interpreter of ``bench/.peers/fastmcp`` (FastMCP is not a project
dependency). Usage: ``fastmcp_proxy.py PORT -- COMMAND [ARGS...]``. It only wires
FastMCP's documented ``create_proxy`` to a stdio transport; it must never add work of
its own to the path being measured.
"""

from __future__ import annotations

import sys

from fastmcp.client.transports import StdioTransport
from fastmcp.server import create_proxy


def main() -> None:
    port, sep, *command = sys.argv[1:]
    if sep != "--" or not command:
        raise SystemExit(__doc__)
    # keep_alive: one upstream process for the proxy's life, as the other arms have.
    transport = StdioTransport(command=command[0], args=command[1:], keep_alive=True)
    proxy = create_proxy(transport, name="fastmcp-proxy")
    proxy.run(
        transport="http", host="127.0.0.1", port=int(port), show_banner=False, log_level="WARNING"
    )


if __name__ == "__main__":
    main()
