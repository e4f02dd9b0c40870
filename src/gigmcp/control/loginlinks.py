"""One-time sign-in links: how the local administrator of a gateway without an identity
provider signs in to the control plane.

Owns minting a link's secret for the local administrator (returned once; the store
keeps its hash and a deadline minutes away) and redeeming it exactly once. Whether a
link may be offered at all (OIDC off, listening on loopback only) is the caller's rule
(app.py and the CLI decide it from the settings). It must never redeem a link twice,
after its deadline, or for anyone but the local administrator, and never log a link.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from gigmcp.auth import tokens
from gigmcp.control import actor as actors
from gigmcp.control.actor import Actor
from gigmcp.store.models import AuditRow, LoginLink

LIFETIME = timedelta(minutes=10)


def mint(engine: Engine, lifetime: timedelta = LIFETIME) -> str:
    admin = actors.local_admin(engine)
    secret = tokens.LOGIN_LINK.mint()
    now = datetime.now(UTC)
    with Session(engine) as s, s.begin():
        s.add(
            LoginLink(
                token_hash=tokens.digest(secret),
                user_id=admin.user_id,
                created_at=now,
                expires_at=now + lifetime,
            )
        )
        s.add(AuditRow(action="login_link.mint", outcome="ok", user_id=admin.user_id))
    return secret


def redeem(engine: Engine, secret: str | None) -> Actor | None:
    """The local administrator, once, for a valid unused link; None otherwise."""
    if not secret or not tokens.LOGIN_LINK.well_formed(secret):
        return None
    now = datetime.now(UTC)
    with Session(engine) as s, s.begin():
        # One UPDATE decides: of two browsers racing with the same link, one wins.
        used = s.execute(
            update(LoginLink)
            .where(
                LoginLink.token_hash == tokens.digest(secret),
                LoginLink.used_at.is_(None),
                LoginLink.expires_at > now,
            )
            .values(used_at=now)
            .returning(LoginLink.user_id)
        ).scalar_one_or_none()
        if used is None:
            return None
        s.add(AuditRow(action="login_link.redeem", outcome="ok", user_id=used))
    local = actors.find_local_admin(engine)
    if local is None or local.user_id != used:
        return None
    return local
