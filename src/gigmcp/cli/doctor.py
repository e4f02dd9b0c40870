"""``gigmcp doctor``: whether this host can jail MCP servers, and whether the jail can
run each server in the store.

Owns the command's report (what is missing and how to fix it) and its exit code. It
must never need more configuration than ``GIG_SANDBOX_MODE`` (it runs on hosts with
nothing else set up yet), and never change the host or the store.
"""

from __future__ import annotations

import os

import typer

from gigmcp.cli.app import app


@app.command("doctor")
def doctor() -> None:
    """Check that this host can jail MCP servers; say what is missing and how to fix it."""
    from gigmcp.sandbox.doctor import run_checks
    from gigmcp.sandbox.mode import MODES

    # Only this variable: the doctor must run on a host with nothing else configured yet.
    setting = os.environ.get("GIG_SANDBOX_MODE", "auto").strip().lower()
    if setting not in MODES:
        typer.echo(
            f"gigmcp: GIG_SANDBOX_MODE: expected auto, root or userns, not {setting!r}",
            err=True,
        )
        raise typer.Exit(2)
    checks = run_checks(setting)
    width = max(len(c.name) for c in checks)
    for c in checks:
        if c.ok:
            typer.echo(f"ok       {c.name:<{width}}  {c.detail}".rstrip())
            if c.warning:
                typer.echo(f"WARNING  {c.name:<{width}}  {c.warning}")
        else:
            typer.echo(
                f"MISSING  {c.name:<{width}}  {c.problem}\n         {'':<{width}}  fix: {c.fix}"
            )
    from gigmcp.cli.launchcheck import print_server_checks

    servers_ok = print_server_checks()
    if not all(c.ok for c in checks):
        typer.echo("gigmcp: this host cannot jail MCP servers (see above)", err=True)
        raise typer.Exit(1)
    if not servers_ok:
        typer.echo(
            "gigmcp: this host can jail MCP servers, but some servers cannot run in the "
            "jail (see above)",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo("gigmcp: this host can jail MCP servers", err=True)
