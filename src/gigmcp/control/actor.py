"""Who is acting: the user every service function is called for, and the rule that
decides which rows they may see or change.

Owns the :class:`Actor` type, the ownership rule (:meth:`Actor.may_touch`) and finding
the local administrator the ``gigmcp`` command acts as. It must never grant admin
rights from anything but the user's stored role, and never build a login: users,
roles and sign-in belong to the control plane.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from gigmcp.errors import NotFound
from gigmcp.store.models import User

ADMIN_ROLE = "admin"
# The local administrator: the one user of a gateway without sign-in, who owns what
# the command line makes.
LOCAL_ISSUER, LOCAL_SUBJECT = "local", "admin"


@dataclass(frozen=True, slots=True)
class Actor:
    """The acting user: their id, and whether their role is admin.

    An administrator viewing the gateway as another user (impersonation) acts as that
    user (``user_id``, ``admin``: theirs), read-only, with ``real_user_id`` naming the
    administrator for the audit log."""

    user_id: int
    admin: bool
    real_user_id: int | None = None
    read_only: bool = False

    def may_touch(self, owner_id: int) -> bool:
        """A row is the actor's to see and change when they own it or are an admin."""
        return self.admin or owner_id == self.user_id

    @property
    def impersonating(self) -> bool:
        return self.real_user_id is not None


def of_user(engine: Engine, user_id: int) -> Actor:
    """The actor for a stored user, with the rights of their stored role."""
    with Session(engine) as s:
        user = s.get(User, user_id)
        if user is None:
            raise NotFound(f"no user with id {user_id}")
        return Actor(user.id, user.role == ADMIN_ROLE)


def find_local_admin(engine: Engine) -> Actor | None:
    """The local administrator, if the store has one; never writes."""
    with Session(engine) as s:
        uid = s.scalar(
            select(User.id).where(User.issuer == LOCAL_ISSUER, User.subject == LOCAL_SUBJECT)
        )
        return None if uid is None else Actor(uid, True)


def local_admin(engine: Engine) -> Actor:
    """The local administrator, created on first use."""
    with Session(engine) as s, s.begin():
        uid = s.scalar(
            select(User.id).where(User.issuer == LOCAL_ISSUER, User.subject == LOCAL_SUBJECT)
        )
        if uid is None:
            user = User(issuer=LOCAL_ISSUER, subject=LOCAL_SUBJECT, email=None, role=ADMIN_ROLE)
            s.add(user)
            s.flush()
            uid = user.id
        return Actor(uid, True)
