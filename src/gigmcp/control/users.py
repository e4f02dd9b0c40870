"""People: who a signed-in identity is to the gateway, and what role they hold.

Owns turning a verified identity (issuer, subject and the claims the identity provider
vouched for) into a user row and an :class:`~gigmcp.control.actor.Actor`, recomputing
the role at every sign-in from the role policy, and listing users for administrators.
A user is keyed on (issuer, subject) alone: email and name are stored as shown and
never used to find or merge anyone. It must never make an administrator from anything
but the role policy (the roles claim, the bootstrap subjects, or a *verified* email on
the bootstrap list), and never let a non-administrator list users.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from gigmcp.control.actor import ADMIN_ROLE, Actor
from gigmcp.errors import Forbidden, NotFound
from gigmcp.store.models import AuditRow, User

USER_ROLE = "user"


@dataclass(frozen=True, slots=True)
class Identity:
    """What the identity provider vouched for, after the ID token was verified."""

    issuer: str
    subject: str
    email: str | None = None
    email_verified: bool = False
    name: str | None = None
    roles: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RolePolicy:
    """How a role is decided: the administrators' role name in the roles claim, and the
    bootstrap lists for the first administrator."""

    admin_role: str | None = None
    admin_subjects: frozenset[str] = frozenset()
    admin_emails: frozenset[str] = frozenset()

    def role_of(self, who: Identity) -> str:
        if self.admin_role is not None and self.admin_role in who.roles:
            return ADMIN_ROLE
        if who.subject in self.admin_subjects:
            return ADMIN_ROLE
        # An email is only a bootstrap hint, and only when the provider verified it.
        if who.email_verified and who.email and who.email.lower() in self.admin_emails:
            return ADMIN_ROLE
        return USER_ROLE


@dataclass(frozen=True, slots=True)
class UserInfo:
    id: int
    issuer: str
    subject: str
    email: str | None
    name: str | None
    role: str
    created_at: datetime
    last_sign_in_at: datetime | None


def _info(u: User) -> UserInfo:
    return UserInfo(
        u.id, u.issuer, u.subject, u.email, u.name, u.role, u.created_at, u.last_sign_in_at
    )


def sign_in(engine: Engine, who: Identity, policy: RolePolicy) -> Actor:
    """The user for ``who``, made on first sign-in, with the role the policy gives now."""
    role = policy.role_of(who)
    # Not rows.change: a sign-in is no change the MCP endpoints must reload for.
    with Session(engine) as s, s.begin():
        user = s.scalar(select(User).where(User.issuer == who.issuer, User.subject == who.subject))
        if user is None:
            user = User(issuer=who.issuer, subject=who.subject, role=role)
            s.add(user)
        user.email, user.name, user.role = who.email, who.name, role
        user.last_sign_in_at = datetime.now(UTC)
        s.flush()
        s.add(AuditRow(action="user.sign_in", outcome="ok", user_id=user.id, detail=role))
        return Actor(user.id, role == ADMIN_ROLE)


def me(engine: Engine, actor: Actor) -> UserInfo:
    with Session(engine) as s:
        user = s.get(User, actor.user_id)
        if user is None:
            raise NotFound("no such user")
        return _info(user)


def list_users(engine: Engine, actor: Actor) -> Sequence[UserInfo]:
    """Every user, for an administrator (the real one, when impersonating)."""
    require_admin(engine, actor)
    with Session(engine) as s:
        return [_info(u) for u in s.scalars(select(User).order_by(User.id))]


def require_admin(engine: Engine, actor: Actor) -> None:
    """Administrator checks always use the real user: an administrator viewing the
    gateway as someone else is still one; a user viewed by one is not."""
    real = actor.real_user_id if actor.real_user_id is not None else actor.user_id
    with Session(engine) as s:
        user = s.get(User, real)
        if user is None or user.role != ADMIN_ROLE:
            raise Forbidden("administrators only")
