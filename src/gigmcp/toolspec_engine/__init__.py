"""The toolspec engine: Gig'MCP's own generic MCP server for ``image.builder: toolpack``.

A registry toolspec maps each tool to one HTTP request. The gateway runs this package
inside a server's bubblewrap jail, with the toolspec handed over as a JSON file; the
engine speaks MCP over stdio (newline-delimited JSON-RPC 2.0), turns every
``tools/call`` into the HTTPS request the spec describes and the answer into a tool
result. Its traffic leaves the jail only through the egress proxy, which swaps the
placeholder the engine puts in the credential header for the real key.

Modules, one job each:

- ``spec``: the engine's input file, checked defensively (it runs on the untrusted side);
- ``schema``: a tool's JSON Schema and the check of call arguments against it;
- ``request``: arguments to an HTTP request (path, query, headers, body, credential);
- ``upstream``: sending it over TLS, through the proxy, with timeouts and size caps;
- ``results``: an HTTP answer, or a failure, to an MCP tool result;
- ``rpc``: the JSON-RPC loop on stdin/stdout;
- ``cli``: the command line; ``launch``: what the gateway needs to start it.

It must run with *only the Python standard library*: the jail binds a bare interpreter
read-only and this package's own directory, not the gateway's virtual environment. So
no PyYAML, no MCP SDK, no httpx, and no import of anything else from ``gigmcp``: every
import inside this package is relative or from the standard library. It must never see
or need a real credential, and never write to stdout anything but protocol messages.
"""

from __future__ import annotations

ENGINE_NAME = "gigmcp-toolspec-engine"
ENGINE_VERSION = "0.1.0"
