"""``gigmcp credential`` and ``gigmcp vault``: set credential values, rotate the master key.

Owns reading a value from standard input (never from argv, where every user of the host
could read it in /proc) and the operator-facing output of these commands. It must never
print a value, and never accept one from the command line.
"""

from __future__ import annotations

import sys

import typer

from gigmcp.cli.main import _run, _store, app, fail
from gigmcp.config import ConfigError, Settings, ensure_master_key, master_keys
from gigmcp.store import admin
from gigmcp.vault import store as vault_store
from gigmcp.vault.keys import Keyring, MasterKey

credential_app = typer.Typer(
    help="Credential values (write-only; read from standard input).", no_args_is_help=True
)
vault_app = typer.Typer(help="The vault that seals credential values.", no_args_is_help=True)
app.add_typer(credential_app, name="credential")
app.add_typer(vault_app, name="vault")

MAX_VALUE = 64 * 1024


def keyring(settings: Settings) -> Keyring:
    try:
        notice = ensure_master_key(settings)
        current, previous = master_keys(settings)
    except ConfigError as err:
        fail(str(err), 2)
    if notice:
        typer.echo(notice, err=True)
    return Keyring(MasterKey(current), [MasterKey(previous)] if previous else [])


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
    settings, engine, uid = _store()
    ring = keyring(settings)
    value = _read_value()
    _run(lambda: admin.set_credential(engine, ring, uid, server, credential_id, value))
    typer.echo(f"credential {server}/{credential_id} set (sealed in the vault)", err=True)


@credential_app.command("unset")
def credential_unset(server: str, credential_id: str) -> None:
    """Remove a credential's value."""
    _, engine, uid = _store()
    _run(lambda: admin.unset_credential(engine, uid, server, credential_id))
    typer.echo(f"credential {server}/{credential_id} removed", err=True)


@credential_app.command("list")
def credential_list() -> None:
    """Declared credentials, how each is delivered, and whether a value is set (never
    the value)."""
    _, engine, uid = _store()
    for server, cid, kind, is_set in admin.list_credentials(engine, uid):
        typer.echo(f"{server}\t{cid}\t{kind}\t{'set' if is_set else 'not set'}")


@vault_app.command("rotate-master-key")
def vault_rotate() -> None:
    """Re-wrap every value under GIG_MASTER_KEY, reading the old ones with
    GIG_MASTER_KEY_PREVIOUS; one transaction, while the gateway keeps serving."""
    settings, engine, uid = _store()
    ring = keyring(settings)
    stale = {k for k in vault_store.key_ids(engine) if k != ring.current.key_id_hex}
    unknown = stale - set(ring.ids)
    if unknown:
        fail(
            f"values are sealed under key(s) {', '.join(sorted(unknown))}, which are not "
            "configured: set the old key as GIG_MASTER_KEY_PREVIOUS (or _FILE) and retry"
        )
    result = None

    def rotate() -> None:
        nonlocal result
        result = admin.rotate_master_key(engine, ring, uid)

    _run(rotate)
    assert result is not None
    typer.echo(
        f"re-wrapped {result.rewrapped} value(s) under master key {result.key_id} "
        f"({result.already_current} already were); GIG_MASTER_KEY_PREVIOUS can now be removed",
        err=True,
    )


@vault_app.command("status")
def vault_status() -> None:
    """Which master key ids seal how many values."""
    settings, engine, _ = _store()
    ring = keyring(settings)
    counts = vault_store.key_ids(engine)
    typer.echo(f"current master key: {ring.current.key_id_hex}")
    for kid, n in sorted(counts.items()):
        mark = (
            "current"
            if kid == ring.current.key_id_hex
            else ("previous" if kid in ring.ids else "NOT CONFIGURED")
        )
        typer.echo(f"{kid}\t{n}\t{mark}")
