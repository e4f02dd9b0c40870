"""Protocol knowledge with no I/O: JSON-RPC envelopes, MCP versions and ``_meta`` keys.

Nothing here opens a socket, a file or a process; everything is pure and cheap so it
can sit on the hot path of the router and the endpoint.
"""
