"""Personal API tokens: how scripts act as their user on the REST API.

Owns minting (the token is returned once; the store keeps its hash), listing, revoking
and resolving a presented token to its user with its scope: ``read`` tokens may only
read, ``write`` tokens may change what their user may change. A token is its user's
alone: nobody else lists or revokes it, administrators included. Writes here never
bump the configuration revision. It must never return or log a token after minting,
and never let a read token change anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from gigmcp.auth import tokens
from gigmcp.control import rows
from gigmcp.control.actor import ADMIN_ROLE, LOCAL_ISSUER, Actor
from gigmcp.control.websessions import utc
from gigmcp.errors import Invalid, NotFound
from gigmcp.store.models import ApiToken, User

SCOPES = ("read", "write")
# Last use is written at most this often (a script may call many times a second).
TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class ApiTokenInfo:
    id: int
    name: str
    scope: str
    display: str
    created_at: datetime
    expires_at: datetime | None
    revoked: bool
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class Resolved:
    actor: Actor
    token_id: int
    scope: str
    local: bool = False  # the local administrator's (embedded default)


def mint(
    engine: Engine, actor: Actor, name: str, scope: str, expires_in: timedelta | None
) -> tuple[int, str]:
    name = name.strip()
    if not 1 <= len(name) <= 255:
        raise Invalid("name: 1 to 255 characters")
    if scope not in SCOPES:
        raise Invalid(f"scope: one of {', '.join(SCOPES)}")
    rows.writable(actor)
    token = tokens.API.mint()
    with rows.account(engine, actor, "api_token.mint", detail=f"{name} ({scope})") as s:
        row = ApiToken(
            token_hash=tokens.digest(token),
            display=tokens.API.display(token),
            user_id=actor.user_id,
            name=name,
            scope=scope,
            expires_at=datetime.now(UTC) + expires_in if expires_in else None,
        )
        s.add(row)
        s.flush()
        return row.id, token


def list_tokens(engine: Engine, actor: Actor) -> list[ApiTokenInfo]:
    with Session(engine) as s:
        # Personal: the real user's own, also while viewing the gateway as someone else.
        owner = actor.real_user_id if actor.real_user_id is not None else actor.user_id
        q = select(ApiToken).where(ApiToken.user_id == owner).order_by(ApiToken.id)
        return [
            ApiTokenInfo(
                t.id,
                t.name,
                t.scope,
                t.display,
                utc(t.created_at),
                utc(t.expires_at) if t.expires_at else None,
                t.revoked_at is not None,
                utc(t.last_used_at) if t.last_used_at else None,
            )
            for t in s.scalars(q)
        ]


def revoke(engine: Engine, actor: Actor, token_id: int) -> None:
    rows.writable(actor)
    with rows.account(engine, actor, "api_token.revoke", detail=f"api token {token_id}") as s:
        row = s.get(ApiToken, token_id)
        if row is None or row.user_id != actor.user_id:
            raise NotFound(f"no API token with id {token_id}")
        if row.revoked_at is None:
            row.revoked_at = datetime.now(UTC)


def resolve(engine: Engine, token: str | None) -> Resolved | None:
    """The user and scope of a presented token; None when unknown, revoked or expired."""
    if not token or not tokens.API.well_formed(token):
        return None
    now = datetime.now(UTC)
    with Session(engine) as s:
        row = s.scalar(select(ApiToken).where(ApiToken.token_hash == tokens.digest(token)))
        if row is None or row.revoked_at is not None:
            return None
        if row.expires_at is not None and utc(row.expires_at) <= now:
            return None
        user = s.get(User, row.user_id)
        if user is None:
            return None
        resolved = Resolved(
            Actor(user.id, user.role == ADMIN_ROLE, read_only=row.scope == "read"),
            row.id,
            row.scope,
            user.issuer == LOCAL_ISSUER,
        )
        if row.last_used_at is None or now - utc(row.last_used_at) >= TOUCH_EVERY:
            s.execute(update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now))
            s.commit()
        return resolved
