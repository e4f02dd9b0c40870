"""MCP protocol revisions the gateway speaks, and what each one has.

Owns version strings and era rules only; it never decides routing.
"""

from __future__ import annotations

from typing import Final

MODERN: Final = "2026-07-28"
MODERN_VERSIONS: Final = (MODERN,)
# Newest first: the gateway answers `initialize` with the client's version when it is here.
LEGACY_VERSIONS: Final = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
ALL_VERSIONS: Final = MODERN_VERSIONS + LEGACY_VERSIONS
# A request without MCP-Protocol-Version may be treated as this (spec, 2025-06-18+).
HEADERLESS_DEFAULT: Final = "2025-03-26"

META_PROTOCOL_VERSION: Final = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_INFO: Final = "io.modelcontextprotocol/clientInfo"
META_CLIENT_CAPABILITIES: Final = "io.modelcontextprotocol/clientCapabilities"
META_SERVER_INFO: Final = "io.modelcontextprotocol/serverInfo"
META_LOG_LEVEL: Final = "io.modelcontextprotocol/logLevel"
META_SUBSCRIPTION_ID: Final = "io.modelcontextprotocol/subscriptionId"


def is_modern(version: str) -> bool:
    return version in MODERN_VERSIONS


def is_legacy(version: str) -> bool:
    return version in LEGACY_VERSIONS


def has_resumability(version: str) -> bool:
    """Last-Event-ID replay exists from 2025-03-26 to 2025-11-25."""
    return version in ("2025-03-26", "2025-06-18", "2025-11-25")


LOG_LEVELS: Final = (
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
)


def log_rank(level: object) -> int:
    """Severity rank of a level; unknown levels rank as the most severe so they are not lost."""
    try:
        return LOG_LEVELS.index(level)  # type: ignore[arg-type,unused-ignore]
    except ValueError:
        return len(LOG_LEVELS)
