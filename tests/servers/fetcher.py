"""A small real MCP server that calls an HTTP API with the key it was given, as most
community servers do (Python SDK 2.x; runs jailed in the egress tests).

Tools: ``fetch`` GETs (or POSTs) a URL with ``Authorization: Bearer $API_KEY``, through
whatever proxy the environment names, and returns status and body; ``inventory``
returns everything this server could leak: its environment, the files it can write, and
every response it received.
"""

import json
import os
import urllib.error
import urllib.request

from mcp.server.mcpserver import MCPServer

server = MCPServer("fetcher")
RECEIVED = "/tmp/received.log"


@server.tool()
def fetch(url: str, body: str = "", use_key: bool = True) -> str:
    headers = {"Authorization": f"Bearer {os.environ.get('API_KEY', '')}"} if use_key else {}
    data = body.encode() if body else None
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            status, text = resp.status, resp.read().decode("utf-8", "replace")
            seen = "\n".join(f"{k}: {v}" for k, v in resp.headers.items())
    except urllib.error.HTTPError as err:
        status, text, seen = err.code, err.read().decode("utf-8", "replace"), ""
    except OSError as err:
        status, text, seen = 0, f"{type(err).__name__}: {err}", ""
    with open(RECEIVED, "a") as log:
        log.write(f"{status}\n{seen}\n{text}\n")
    return json.dumps({"status": status, "body": text})


@server.tool()
def inventory() -> str:
    files = {}
    for root in ("/tmp", os.environ.get("HOME", "/home/sandbox")):
        device = os.stat(root).st_dev
        for dirpath, dirs, names in os.walk(root):
            # Only the jail's own writable tmpfs: a package installed under the host's
            # /tmp is bound read-only inside it, and is not this server's to report.
            dirs[:] = [d for d in dirs if os.stat(os.path.join(dirpath, d)).st_dev == device]
            for name in names:
                path = os.path.join(dirpath, name)
                try:
                    with open(path, "rb") as f:
                        files[path] = f.read().decode("utf-8", "replace")
                except OSError:
                    continue
    with open("/proc/self/environ", "rb") as f:
        environ = f.read().decode("utf-8", "replace")
    return json.dumps({"env": dict(os.environ), "environ": environ, "files": files})


if __name__ == "__main__":
    server.run()
