"""``gigmcp login-link``: a one-time sign-in link for the local administrator.

Owns printing the link (here, on stdout, and nowhere else) in the embedded default: no
identity provider and a gateway that listens on loopback only. It must never print a
link when either is not so, and never log one.
"""

from __future__ import annotations

import typer

from gigmcp.cli.app import app, fail, store
from gigmcp.config import Settings
from gigmcp.control import loginlinks


def login_link_url(settings: Settings, secret: str) -> str:
    return f"{settings.public_origin}/api/auth/link?token={secret}"


@app.command("login-link")
def login_link() -> None:
    """Print a one-time sign-in link for the local administrator (single use, minutes)."""
    st = store()
    mode = st.settings.sign_in
    if mode != "link":
        why = (
            "an identity provider is configured: sign in with it"
            if mode == "oidc"
            else "the gateway listens beyond loopback (GIG_LISTEN): links are refused there"
        )
        fail(f"no sign-in link: {why}", 2)
    typer.echo(login_link_url(st.settings, loginlinks.mint(st.engine)))
