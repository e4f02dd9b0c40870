"""Browser sessions: the opaque token in a signed-in browser's cookie, and its CSRF token.

Owns opening a session at each sign-in (a new token every time, so a token planted
before sign-in is worth nothing: no fixation), resolving a presented token to the
acting user (refusing a revoked, idle-expired or absolutely expired one), checking a
state-changing request's CSRF token against the one bound to that session, and listing
and revoking a user's own sessions. Only hashes are stored. Writes here never bump the
configuration revision. It must never return a session to anyone but its user (an
administrator included: sessions are personal), compare a secret in variable time, or
log a token.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from gigmcp.auth import tokens
from gigmcp.control import rows
from gigmcp.control.actor import ADMIN_ROLE, LOCAL_ISSUER, Actor
from gigmcp.errors import NotFound
from gigmcp.store.models import User, WebSession

# A session's last-seen time is written at most this often: a page load is not worth a
# database write, and idle expiry is measured in minutes.
TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Lifetimes:
    idle: timedelta = timedelta(hours=8)
    absolute: timedelta = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class NewSession:
    """What the browser is given, once: the cookie's token and the CSRF token."""

    id: int
    token: str
    csrf: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Current:
    """A resolved session: who acts, and what binds its CSRF token."""

    id: int
    actor: Actor
    csrf_hash: str
    # The local administrator of the embedded default (signed in with a link).
    local: bool = False

    def csrf_ok(self, presented: str | None) -> bool:
        if not presented or not tokens.CSRF.well_formed(presented):
            return False
        return hmac.compare_digest(tokens.digest(presented).encode(), self.csrf_hash.encode())


@dataclass(frozen=True, slots=True)
class SessionInfo:
    id: int
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    client: str | None
    current: bool


def utc(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)  # SQLite drops the zone


def open_session(
    engine: Engine, actor: Actor, lifetimes: Lifetimes, client: str | None = None
) -> NewSession:
    token, csrf = tokens.SESSION.mint(), tokens.CSRF.mint()
    now = datetime.now(UTC)
    with rows.account(engine, actor, "session.open") as s:
        row = WebSession(
            token_hash=tokens.digest(token),
            user_id=actor.user_id,
            csrf_hash=tokens.digest(csrf),
            created_at=now,
            last_seen_at=now,
            expires_at=now + lifetimes.absolute,
            client=(client or "")[:255] or None,
        )
        s.add(row)
        s.flush()
        return NewSession(row.id, token, csrf, row.expires_at)


def resolve(
    engine: Engine, token: str | None, lifetimes: Lifetimes, *, touch: bool = True
) -> Current | None:
    """The session a cookie names, or None when it is unknown, revoked or expired.
    ``touch``: the request is the person's (it keeps the session from idling out); a
    page's background poll is not."""
    if not token or not tokens.SESSION.well_formed(token):
        return None
    now = datetime.now(UTC)
    with Session(engine) as s:
        row = s.scalar(select(WebSession).where(WebSession.token_hash == tokens.digest(token)))
        if row is None or row.revoked_at is not None:
            return None
        if utc(row.expires_at) <= now or utc(row.last_seen_at) + lifetimes.idle <= now:
            return None
        user = s.get(User, row.user_id)
        if user is None:
            return None
        actor = Actor(user.id, user.role == ADMIN_ROLE)
        viewing = row.as_user_id is not None and row.as_until is not None
        # Viewing as someone else needs the real user to be an administrator still.
        if viewing and utc(row.as_until) > now and user.role == ADMIN_ROLE:  # type: ignore[arg-type]
            target = s.get(User, row.as_user_id)
            if target is not None:
                actor = Actor(target.id, target.role == ADMIN_ROLE, user.id, read_only=True)
        current = Current(row.id, actor, row.csrf_hash, user.issuer == LOCAL_ISSUER)
        if touch and now - utc(row.last_seen_at) >= TOUCH_EVERY:
            s.execute(update(WebSession).where(WebSession.id == row.id).values(last_seen_at=now))
            s.commit()
        return current


def close(engine: Engine, current: Current) -> None:
    """Sign out: the session is revoked and its token is worthless from now on."""
    _revoke(engine, current.actor, current.id, "session.close")


def list_sessions(engine: Engine, actor: Actor, current_id: int | None) -> list[SessionInfo]:
    """The user's own live sessions (the real user's, when impersonating)."""
    owner = actor.real_user_id if actor.real_user_id is not None else actor.user_id
    now = datetime.now(UTC)
    with Session(engine) as s:
        q = select(WebSession).where(
            WebSession.user_id == owner,
            WebSession.revoked_at.is_(None),
            WebSession.expires_at > now,
        )
        return [
            SessionInfo(
                r.id,
                utc(r.created_at),
                utc(r.last_seen_at),
                utc(r.expires_at),
                r.client,
                r.id == current_id,
            )
            for r in s.scalars(q.order_by(WebSession.id))
        ]


def revoke(engine: Engine, actor: Actor, session_id: int) -> None:
    """Revoke one of the user's sessions: a change, so never with a read-only token or
    while viewing the gateway as someone else (signing out, :func:`close`, always works)."""
    rows.writable(actor)
    _revoke(engine, actor, session_id, "session.revoke")


def _revoke(engine: Engine, actor: Actor, session_id: int, action: str) -> None:
    owner = actor.real_user_id if actor.real_user_id is not None else actor.user_id
    with rows.account(engine, actor, action, detail=f"session {session_id}") as s:
        row = s.get(WebSession, session_id)
        if row is None or row.user_id != owner:
            raise NotFound(f"no session with id {session_id}")
        if row.revoked_at is None:
            row.revoked_at = datetime.now(UTC)
