"""``gigmcp credential set | unset | list``: credential values, write-only.

Owns reading a value from standard input (never from argv, where every user of the host
could read it in /proc) and these commands' output. It must never print a value, never
accept one from the command line, and never reach the store but through the service
layer (``control/credentials.py``).
"""

from __future__ import annotations

import sys

import typer

from gigmcp.cli.app import act, credential_app, fail, keyring, store
from gigmcp.control import credentials
from gigmcp.control.credentials import MAX_VALUE


def _read_value() -> bytes:
    if sys.stdin.isatty():
        typer.echo("value (input hidden; end with Enter): ", err=True, nl=False)
        import getpass

        return getpass.getpass("").encode()
    data = sys.stdin.buffer.read(MAX_VALUE + 2)
    if len(data) > MAX_VALUE + 1:
        fail("the value on standard input is longer than 64 KiB")
    # One trailing newline is how `echo` and heredocs end a value; it is not part of it.
    return data[:-1] if data.endswith(b"\n") else data


@credential_app.command("set")
def credential_set(server: str, credential_id: str) -> None:
    """Set a credential's value for a server, from standard input:
    printf '%s' "$KEY" | gigmcp credential set SERVER CREDENTIAL_ID"""
    st = store()
    ring = keyring(st.settings)
    value = _read_value()
    credentials.set_credential(st.engine, ring, st.actor, server, credential_id, value)
    typer.echo(f"credential {server}/{credential_id} set (sealed in the vault)", err=True)


@credential_app.command("unset")
def credential_unset(server: str, credential_id: str) -> None:
    """Remove a credential's value."""
    act(
        lambda st: credentials.unset_credential(st.engine, st.actor, server, credential_id),
        f"credential {server}/{credential_id} removed",
    )


@credential_app.command("list")
def credential_list() -> None:
    """Declared credentials, how each is delivered, and whether a value is set (never
    the value)."""
    st = store()
    for c in credentials.list_credentials(st.engine, st.actor):
        typer.echo(f"{c.server}\t{c.credential_id}\t{c.kind}\t{'set' if c.is_set else 'not set'}")
