"""Profile tokens: the bearer secrets a client presents at a profile's endpoint.

Owns minting (the token is returned once, from :func:`mint_token`; the store keeps its
hash and a display prefix), listing, revoking, and reading a lifetime such as ``30d``.
A token belongs to the owner of its profile. It must never return or log a token except
from :func:`mint_token`, once, and never list or revoke another user's token for an
actor who is not an admin.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from gigmcp.auth import tokens
from gigmcp.control import rows
from gigmcp.control.actor import Actor
from gigmcp.errors import Invalid, NotFound
from gigmcp.store.models import Profile, ProfileToken

MAX_NAME = 255  # the column's size
# The longest lifetime the API and the dashboard offer (the command line reads any
# duration: parse_duration).
MAX_LIFETIME_DAYS = 3650


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as listed: never the token itself."""

    id: int
    profile: str
    display: str
    name: str | None
    revoked: bool
    expires_at: datetime | None
    last_used_at: datetime | None


def mint_token(
    engine: Engine, actor: Actor, slug: str, name: str | None, expires_in: timedelta | None
) -> str:
    if name is not None and len(name) > MAX_NAME:
        raise Invalid(f"a token's name is at most {MAX_NAME} characters")
    if expires_in is not None and expires_in <= timedelta(0):
        raise Invalid("a token's lifetime must be positive")
    token = tokens.mint()
    with rows.change(engine, actor, "token.mint", detail=slug) as s:
        p = rows.profile(s, actor, slug)
        s.add(
            ProfileToken(
                token_hash=tokens.digest(token),
                display=tokens.display(token),
                profile_id=p.id,
                owner_id=p.owner_id,
                name=name,
                expires_at=datetime.now(UTC) + expires_in if expires_in else None,
            )
        )
    return token


def list_tokens(engine: Engine, actor: Actor, slug: str | None = None) -> list[TokenInfo]:
    """The actor's tokens (every token, for an admin) by id, of one profile if given."""
    with Session(engine) as s:
        q = select(ProfileToken, Profile.slug).join(Profile, Profile.id == ProfileToken.profile_id)
        if slug:
            q = q.where(Profile.slug == slug)
        if not actor.admin:
            q = q.where(ProfileToken.owner_id == actor.user_id)
        return [
            TokenInfo(
                t.id,
                pslug,
                t.display,
                t.name,
                t.revoked_at is not None,
                t.expires_at,
                t.last_used_at,
            )
            for t, pslug in s.execute(q.order_by(ProfileToken.id))
        ]


def revoke_token(engine: Engine, actor: Actor, token_id: int) -> None:
    """Revoke a token; the gateway refuses it from its next request on."""
    with rows.change(engine, actor, "token.revoke", detail=f"token {token_id}") as s:
        row = s.get(ProfileToken, token_id)
        if row is None or not actor.may_touch(row.owner_id):
            raise NotFound(f"no token with id {token_id} (see: gigmcp token list)")
        if row.revoked_at is None:
            row.revoked_at = datetime.now(UTC)


def parse_duration(text: str) -> timedelta:
    m = re.fullmatch(r"(\d{1,6})([smhd])", text.strip())
    if not m:
        raise Invalid(f"invalid duration {text!r}: use a number and s, m, h or d (e.g. 30d)")
    n, unit = int(m.group(1)), m.group(2)
    if n == 0:
        raise Invalid("duration must be positive")
    return timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[unit]: n})
