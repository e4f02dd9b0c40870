"""``gigmcp server tools``: what each tool of a server looked like when pinned, which
changed since, and approving a change.

Owns the operator-facing output: for a flagged tool, the old and new description and
whether the input schema changed, so the decision is made on what the model would read.
It must never approve without being told which tool, nor reach the store but through
the service layer (``control/pins.py``).
"""

from __future__ import annotations

import json

import typer

from gigmcp.cli.app import server_app, store
from gigmcp.control import pins as tool_pins


@server_app.command("tools")
def server_tools(
    name: str,
    approve: str | None = typer.Option(
        None, "--approve", metavar="TOOL", help="Accept the changed version of TOOL."
    ),
) -> None:
    """Show a server's pinned tools and the ones hidden because they changed."""
    st = store()
    if approve is not None:
        fp = tool_pins.approve(st.engine, st.actor, name, approve)
        typer.echo(f"approved {name}/{approve} (pinned as {fp[:12]}); shown again", err=True)
        return
    pins = tool_pins.list_pins(st.engine, st.actor, name)
    if not pins:
        typer.echo(f"{name}: no tool pinned yet (pins are taken at its first listing)", err=True)
        return
    for pin in pins:
        if pin.flagged_snapshot is None:
            typer.echo(f"pinned   {pin.tool}\t{pin.fingerprint[:12]}")
            continue
        typer.echo(f"CHANGED  {pin.tool}\thidden until approved (--approve {pin.tool})")
        old, new = pin.snapshot, pin.flagged_snapshot
        if old.get("description") != new.get("description"):
            typer.echo(f"         was: {json.dumps(old.get('description'))}")
            typer.echo(f"         now: {json.dumps(new.get('description'))}")
        if old.get("inputSchema") != new.get("inputSchema"):
            typer.echo("         input schema changed:")
            typer.echo(f"         was: {json.dumps(old.get('inputSchema'), sort_keys=True)}")
            typer.echo(f"         now: {json.dumps(new.get('inputSchema'), sort_keys=True)}")
