"""The gateway's own name and version, as it introduces itself to clients and servers.

Owns the one ``serverInfo``/``clientInfo`` object the gateway sends. It must never hold
anything a client could use to probe the host: no hostname, path or build detail.
"""

from __future__ import annotations

from gigmcp.core.jsontypes import JSON

GATEWAY_INFO: JSON = {"name": "gigmcp", "version": "0.1.0"}
