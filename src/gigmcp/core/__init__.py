"""The gateway's shared vocabulary: plain types and small pure functions that every layer
may import (instance keys, server views, credential definitions, launch specs, pins,
placeholders, the JSON and ASGI aliases, the gateway's own server info).

Owns nothing that runs: no I/O, no threads, no global state. It must never import a
package above it; it imports only ``gigmcp.errors`` and ``gigmcp.netpolicy`` (the
allowed order is the "Layers" block of docs/architecture.md, checked by
tests/test_layers.py).
"""
