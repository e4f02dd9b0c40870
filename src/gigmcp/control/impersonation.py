"""Impersonation: an administrator viewing the gateway as another user, read-only.

Owns starting and ending it on the administrator's own browser session: never as
oneself, at most 60 minutes, only by a user whose stored role is admin (the real user,
always), and each start and end an audit row on the *impersonated* user's record, naming
the administrator, so the user can see it. Whether the feature is on at all is the
gateway's setting (``GIG_IMPERSONATION``), checked by the caller. While it lasts the
session's actor is the target with ``read_only`` set, so every write of the service
layer refuses (:func:`gigmcp.control.rows.writable`). It must never let an impersonation
write anything, outlive its deadline, or start from a token rather than a session.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from gigmcp.control.actor import ADMIN_ROLE
from gigmcp.control.websessions import Current
from gigmcp.errors import Conflict, Forbidden, Invalid, NotFound
from gigmcp.store.models import AuditRow, User, WebSession

MAX_MINUTES = 60


def start(engine: Engine, current: Current, target_id: int, minutes: int) -> datetime:
    """View the gateway as ``target_id`` until the returned time."""
    if not 1 <= minutes <= MAX_MINUTES:
        raise Invalid(f"minutes: 1 to {MAX_MINUTES}")
    real = current.actor.real_user_id or current.actor.user_id
    if current.actor.impersonating:
        raise Conflict("already viewing the gateway as another user; stop first")
    if target_id == real:
        raise Invalid("you cannot view the gateway as yourself")
    until = datetime.now(UTC) + timedelta(minutes=minutes)
    with Session(engine) as s, s.begin():
        admin = s.get(User, real)
        if admin is None or admin.role != ADMIN_ROLE:
            raise Forbidden("administrators only")
        if s.get(User, target_id) is None:
            raise NotFound(f"no user with id {target_id}")
        row = s.get(WebSession, current.id)
        if row is None or row.user_id != real:
            raise NotFound("no such session")
        row.as_user_id, row.as_until = target_id, until
        s.add(
            AuditRow(
                action="impersonation.start",
                outcome="ok",
                user_id=target_id,
                real_user_id=real,
                detail=f"until {until.isoformat(timespec='seconds')}",
            )
        )
    return until


def stop(engine: Engine, current: Current) -> None:
    """Back to oneself. Allowed while read-only: it is how read-only ends."""
    actor = current.actor
    if not actor.impersonating:
        return
    with Session(engine) as s, s.begin():
        row = s.get(WebSession, current.id)
        if row is None:
            raise NotFound("no such session")
        row.as_user_id, row.as_until = None, None
        s.add(
            AuditRow(
                action="impersonation.end",
                outcome="ok",
                user_id=actor.user_id,
                real_user_id=actor.real_user_id,
            )
        )
