"""``gigmcp tool enable | disable``: per-profile tool selection.

Owns these commands' arguments. It must never reach the store but through the service
layer (``control/tools.py``).
"""

from __future__ import annotations

from gigmcp.cli.app import act, tool_app
from gigmcp.control import tools


@tool_app.command("enable")
def tool_enable(slug: str, server: str, tool: str) -> None:
    """Enable a tool of a server in a profile."""
    act(lambda st: tools.set_tool(st.engine, st.actor, slug, server, tool, True))


@tool_app.command("disable")
def tool_disable(slug: str, server: str, tool: str) -> None:
    """Disable a tool of a server in a profile (hidden and uncallable at once)."""
    act(lambda st: tools.set_tool(st.engine, st.actor, slug, server, tool, False))
