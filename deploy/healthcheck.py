"""The gateway image's HEALTHCHECK: is the gateway up and answering on its MCP endpoint?

The gateway has no health endpoint of its own. This asks ``/mcp/p/<name>`` without a
token, on loopback at the port of ``GIG_LISTEN``, and is healthy on the gateway's ``401``
(which it gives only once start-up is complete: store migrated, sandbox checked, listener
up). No token is sent, nothing is started and no database row is read or written.
Standard library only; exit 0 healthy, 1 not.
"""

from __future__ import annotations

import http.client
import os
import sys


def main() -> int:
    listen = os.environ.get("GIG_LISTEN", "127.0.0.1:8080")
    _host, _, port = listen.rpartition(":")
    try:
        conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=4)
        conn.request("GET", "/mcp/p/healthcheck", headers={"Accept": "application/json"})
        status = conn.getresponse().status
    except (OSError, ValueError, http.client.HTTPException) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    if status != 401:
        print(f"unhealthy: the MCP endpoint answered {status}, not 401", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
