"""The JSON type aliases of the gateway, defined once.

Owns names for decoded JSON as the gateway handles it. It must never hold logic: a
value's shape is checked where it is read, not here.
"""

from __future__ import annotations

from typing import Any

# A decoded JSON object (a JSON-RPC message, its params, a tool...). Values stay Any:
# what arrives from clients and servers is checked field by field where it is used.
JSON = dict[str, Any]
