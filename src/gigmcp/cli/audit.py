"""``gigmcp audit verify | export``: whether the audit trails were edited, and the
trails as JSON Lines for a SIEM.

Owns these commands' output and exit codes (verify: 0 when every chain holds, 1 when
something was edited, deleted or reordered, each finding on its own line). It must never
reach the store but through the service layer (``control/auditchain.py``).
"""

from __future__ import annotations

import json

import typer

from gigmcp.cli.app import audit_app, keyring, store
from gigmcp.control import auditchain


@audit_app.command("verify")
def audit_verify() -> None:
    """Walk the audit hash chains and check their signed checkpoints; name every row
    that was edited, deleted or reordered."""
    st = store()
    reports = auditchain.verify(st.engine, keyring(st.settings), st.actor)
    for r in reports:
        span = f"#{r.first_seq}-#{r.last_seq}" if r.rows else "empty"
        typer.echo(
            f"{r.stream}: {r.rows} rows ({span}), {r.checkpoints} signed checkpoints "
            f"hold, {r.unsealed} not chained yet: {'OK' if r.ok else 'TAMPERED'}"
        )
        for f in r.findings:
            typer.echo(f"  {'note' if f.kind == 'unsealed' else 'FOUND'}: {f.message}")
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


@audit_app.command("export")
def audit_export(
    stream: str = typer.Argument(..., help="events (calls, changes, sign-ins) or egress."),
    after: int = typer.Option(0, "--after", help="Only rows after this position."),
) -> None:
    """One audit chain as JSON Lines on standard output: each row with its position and
    hashes, then the chain's signed checkpoints."""
    st = store()
    for line in auditchain.export(st.engine, st.actor, stream, after):
        typer.echo(json.dumps(line, sort_keys=True, separators=(",", ":")))
