"""``gigmcp vault rotate-master-key | status``: the master key that seals credential
values.

Owns these commands' output. It must never print a key or a value, nor reach the store
but through the service layer (``control/credentials.py``).
"""

from __future__ import annotations

import typer

from gigmcp.cli.app import keyring, store, vault_app
from gigmcp.control import credentials


@vault_app.command("rotate-master-key")
def vault_rotate() -> None:
    """Re-wrap every value under GIG_MASTER_KEY, reading the old ones with
    GIG_MASTER_KEY_PREVIOUS; one transaction, while the gateway keeps serving."""
    st = store()
    ring = keyring(st.settings)
    result = credentials.rotate_master_key(st.engine, ring, st.actor)
    typer.echo(
        f"re-wrapped {result.rewrapped} value(s) under master key {result.key_id} "
        f"({result.already_current} already were); GIG_MASTER_KEY_PREVIOUS can now be removed",
        err=True,
    )


@vault_app.command("status")
def vault_status() -> None:
    """Which master key ids seal how many values."""
    st = store()
    ring = keyring(st.settings)
    counts = credentials.key_counts(st.engine, st.actor)
    typer.echo(f"current master key: {ring.current.key_id_hex}")
    for kid, n in sorted(counts.items()):
        mark = (
            "current"
            if kid == ring.current.key_id_hex
            else ("previous" if kid in ring.ids else "NOT CONFIGURED")
        )
        typer.echo(f"{kid}\t{n}\t{mark}")
