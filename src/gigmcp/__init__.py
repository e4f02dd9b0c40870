"""Gig'MCP: a security-first gateway for the Model Context Protocol.

This package owns nothing by itself; see ``docs/architecture.md`` for the map of
subpackages. It must never import anything with side effects at import time.
"""

__version__ = "0.1.0"
