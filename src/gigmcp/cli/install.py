"""``gigmcp server install | upgrade | consent | uninstall``: servers from the signed
registry, with what they are allowed shown and agreed to first.

Owns these commands' dialogue (the consent text on stderr, ``[y/N]`` on a terminal,
``--yes`` for automation) and progress output; the flows themselves are the service
layer's (``control/installs.py``). It must never answer consent for the operator
without ``--yes``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

import typer

from gigmcp.cli.app import Store, act, fail, server_app, store
from gigmcp.control import installs
from gigmcp.errors import Invalid
from gigmcp.installer.index_fetch import Fetched


def _fetch(st: Store) -> Fetched:
    source = installs.registry_source(st.settings)
    fetched = asyncio.run(installs.fetch_index(st.engine, st.actor, source))
    for warning in fetched.warnings:
        typer.echo(f"gigmcp: warning: {warning}", err=True)
    return fetched


def _agree(lines: Sequence[str], yes: bool, question: str) -> bool:
    for line in lines:
        typer.echo(line, err=True)
    if yes:
        return True
    if not sys.stdin.isatty():
        fail("consent needed: read the above, then run again with --yes", 2)
    return typer.confirm(question, default=False, err=True)


def _progress() -> installs.Progress:
    last = [-1]

    def report(done: int, total: int) -> None:
        pct = int(done * 100 / total) if total else 100
        if pct // 10 != last[0] // 10:
            last[0] = pct
            typer.echo(f"  fetched {done // 1024} KiB of {total // 1024} KiB ({pct}%)", err=True)

    return report


@server_app.command("install")
def server_install(
    ref: str = typer.Argument(..., help="name, name@version or sha256:<image digest>"),
    name: str | None = typer.Option(None, "--name", help="Server name (default: the manifest's)."),
    yes: bool = typer.Option(False, "--yes", help="Consent without asking (automation)."),
) -> None:
    """Install a server from the signed registry, after showing what it may do."""
    st = store()
    fetched = _fetch(st)
    try:
        plan = installs.plan_install(st.engine, st.actor, fetched, ref, name)
    except Invalid as err:
        fail(str(err), 2)  # the name given: a usage error
    where = installs.target(st.settings)

    def ask(lines: Sequence[str]) -> bool:
        return _agree(lines, yes, "Install it?")

    asyncio.run(installs.install(st.engine, st.actor, where, plan, ask, _progress()))
    typer.echo(
        f"installed {plan.server} ({plan.ref}, {plan.kind}); assign it with: "
        f"gigmcp profile assign PROFILE {plan.server}",
        err=True,
    )


@server_app.command("upgrade")
def server_upgrade(
    name: str,
    to: str | None = typer.Option(None, "--to", help="A version (default: the latest)."),
    yes: bool = typer.Option(False, "--yes", help="Consent to a runtime change without asking."),
) -> None:
    """Move an installed server to a newer manifest; a runtime change needs consent."""
    st = store()
    installs.registry_name(st.engine, st.actor, name)
    fetched = _fetch(st)
    plan = installs.plan_upgrade(st.engine, st.actor, fetched, name, to)
    if plan.up_to_date:
        typer.echo(f"{name} is up to date ({plan.ref})", err=True)
        return
    where = installs.target(st.settings)
    outcome = asyncio.run(installs.upgrade(st.engine, st.actor, where, plan, _progress()))
    if outcome == "applied":
        typer.echo(f"{name}: now {plan.ref} (no change to what it may do)", err=True)
        return
    typer.echo(f"{name}: {plan.ref} changes what the server may do or runs:", err=True)
    _consent_pending(st, name, yes)


@server_app.command("consent")
def server_consent(
    name: str, yes: bool = typer.Option(False, "--yes", help="Consent without asking.")
) -> None:
    """Show an upgrade waiting for consent, and apply it once agreed."""
    _consent_pending(store(), name, yes)


def _consent_pending(st: Store, name: str, yes: bool) -> None:
    pending = installs.pending_upgrade(st.engine, st.actor, name)
    try:
        if not _agree(pending.consent, yes, "Apply this upgrade?"):
            fail("not installed: consent refused", 1)
    except typer.Exit:
        typer.echo(f"{name}: the installed version keeps running; the upgrade waits", err=True)
        raise
    installs.apply_upgrade(st.engine, st.actor, st.settings.packages_dir, pending)
    typer.echo(f"{name}: upgraded to {pending.name}@{pending.version}", err=True)


@server_app.command("uninstall")
def server_uninstall(name: str) -> None:
    """Remove an installed server: its row, assignments, pins, credential values, files."""
    act(
        lambda st: installs.uninstall(st.engine, st.actor, st.settings.packages_dir, name),
        f"uninstalled {name}",
    )
