"""``gigmcp token mint | list | revoke``: profile tokens.

Owns these commands' output: a minted token is printed once, alone on stdout, so
``$(gigmcp token mint p)`` works. It must never print a token at any other time, nor
reach the store but through the service layer (``control/tokens.py``).
"""

from __future__ import annotations

import sys

import typer

from gigmcp.cli.app import act, store, token_app
from gigmcp.control import tokens


@token_app.command("mint")
def token_mint(
    slug: str,
    name: str = typer.Option(None, "--name"),
    expires_in: str = typer.Option(None, "--expires-in", help="e.g. 12h, 30d"),
) -> None:
    """Mint a token for a profile. It is printed once and never stored in clear."""
    st = store()

    def mint() -> str:
        ttl = tokens.parse_duration(expires_in) if expires_in else None
        return tokens.mint_token(st.engine, st.actor, slug, name, ttl)

    token = mint()
    typer.echo("gigmcp: store this token now; it will not be shown again.", err=True)
    sys.stdout.write(token + "\n")


@token_app.command("list")
def token_list(slug: str = typer.Argument(None)) -> None:
    """List tokens (id, profile, name, dates); never the token itself."""
    st = store()
    for t in tokens.list_tokens(st.engine, st.actor, slug):
        state = "revoked" if t.revoked else "active"
        typer.echo(
            f"{t.id}\t{t.profile}\t{t.display}\t{t.name or '-'}\t{state}\t"
            f"expires={t.expires_at or '-'}\tlast_used={t.last_used_at or '-'}"
        )


@token_app.command("revoke")
def token_revoke(token_id: int) -> None:
    """Revoke a token by id; takes effect on the gateway's next request."""
    act(lambda st: tokens.revoke_token(st.engine, st.actor, token_id), f"revoked token {token_id}")
