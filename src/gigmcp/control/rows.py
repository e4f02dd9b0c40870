"""The rows every service module works on, found for an actor, and the transaction
every change runs in.

Owns :func:`change` (one transaction that also bumps ``config_revision`` and writes the
change's audit row, so a running gateway sees it on its very next request and the audit
log never misses one; on PostgreSQL it is then announced to every replica) and
the lookups of a profile, a server and an assignment by name, each refusing a row the
actor may not touch. A refused row is reported as not found, in the same words as a
missing one, so that asking never tells whether another user's row exists. It must never
hand a row to an actor who neither owns it nor is an admin.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from gigmcp.control.actor import ADMIN_ROLE, Actor
from gigmcp.errors import Forbidden, NotFound
from gigmcp.store.bus import announce_change
from gigmcp.store.models import AuditRow, ConfigRevision, Profile, ProfileServer, Server, User


@contextmanager
def change(engine: Engine, actor: Actor, action: str, **audit: object) -> Iterator[Session]:
    """A transaction that bumps the revision and records ``action`` when it commits.
    A read-only actor (an impersonating administrator) is refused before anything."""
    writable(actor)
    with Session(engine) as s, s.begin():
        yield s
        s.execute(
            update(ConfigRevision).where(ConfigRevision.id == 1).values(rev=ConfigRevision.rev + 1)
        )
        s.add(audit_row(actor, action, **audit))
    announce_change(engine)


@contextmanager
def account(engine: Engine, actor: Actor | None, action: str, **audit: object) -> Iterator[Session]:
    """A transaction for the control plane's own rows (sign-ins, sessions, API tokens):
    audited like a change, but the revision stays, so the MCP endpoints never reload
    the catalog because someone signed in."""
    with Session(engine) as s, s.begin():
        yield s
        if actor is None:
            s.add(AuditRow(action=action, outcome="ok", **audit))
        else:
            s.add(audit_row(actor, action, **audit))


def audit_row(actor: Actor, action: str, **audit: object) -> AuditRow:
    return AuditRow(
        action=action,
        outcome="ok",
        user_id=actor.user_id,
        real_user_id=actor.real_user_id,
        **audit,
    )


def writable(actor: Actor) -> None:
    if actor.read_only:
        raise Forbidden("read-only while viewing the gateway as another user; stop first")


def profile(s: Session, actor: Actor, slug: str, *, hint: bool = True) -> Profile:
    """``hint``: whether the error says where to look (reads say it without)."""
    p = s.scalar(select(Profile).where(Profile.slug == slug))
    if p is None or not actor.may_touch(p.owner_id):
        where = " (see: gigmcp profile list)" if hint else ""
        raise NotFound(f"no profile named {slug!r}{where}")
    return p


def server(s: Session, actor: Actor, name: str) -> Server:
    srv = s.scalar(select(Server).where(Server.name == name))
    if srv is None or not actor.may_touch(srv.owner_id):
        raise NotFound(f"no server named {name!r} (see: gigmcp server list)")
    return srv


def usable_server(s: Session, actor: Actor, name: str) -> Server:
    """A server the actor may put in their profiles and set their own credentials for:
    their own, or one an administrator owns (installed or added for everyone: the
    gateway's catalog). Changing the server itself still needs :func:`server`."""
    srv = s.scalar(select(Server).where(Server.name == name))
    if srv is None or not (actor.may_touch(srv.owner_id) or shared(s, srv.owner_id)):
        raise NotFound(f"no server named {name!r} (see: gigmcp server list)")
    return srv


def shared(s: Session, owner_id: int) -> bool:
    """Whether what ``owner_id`` owns is everyone's to use: they are an administrator."""
    owner = s.get(User, owner_id)
    return owner is not None and owner.role == ADMIN_ROLE


def shared_owner_ids(s: Session) -> list[int]:
    return list(s.scalars(select(User.id).where(User.role == ADMIN_ROLE)))


def assignment(s: Session, p: Profile, srv: Server) -> ProfileServer:
    a = s.scalar(
        select(ProfileServer).where(
            ProfileServer.profile_id == p.id, ProfileServer.server_id == srv.id
        )
    )
    if a is None:
        raise NotFound(f"server {srv.name!r} is not assigned to profile {p.slug!r}")
    return a
