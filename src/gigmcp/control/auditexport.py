"""The audit log beyond one page: what a skin needs to link to the next page, to name a
page's rows and to export everything a filter matches.

Owns the opaque cursor a link or an API answer carries (the same encoding as the REST
API's ``after``), the names behind a page's ids (profile slugs, user names) and the
export's walk: keyset pages of :func:`gigmcp.control.audit.events`, one after another,
never more than a cap of rows in all. Every read goes through ``audit.events``, so a
user walks only their own rows. It must never name a profile or a user the actor may
not see, never hold more than one page in memory, and never let a cursor it was given
reach the database unchecked (a forged one is refused in words, not a 500).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from gigmcp.control import audit
from gigmcp.control.actor import Actor
from gigmcp.errors import Invalid
from gigmcp.store.models import Profile, User

# What one export holds at most; the rest is exported again from the cursor it ends with.
EXPORT_CAP = 100_000
# Ids are 64-bit at most in both databases: a larger one would make a driver fail.
_MAX_ID = 2**63 - 1


def token(cursor: audit.Cursor) -> str:
    """The cursor as an opaque, URL-safe string."""
    raw = f"{cursor.at.isoformat()}|{cursor.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor(text: str | None) -> audit.Cursor | None:
    """The cursor ``token`` made; None for no text. Anything else is :class:`Invalid`."""
    if not text:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        at, sep, rid = raw.partition("|")
        found = audit.Cursor(datetime.fromisoformat(at), int(rid))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Invalid("not a cursor this gateway gave") from None
    # int() takes signs, spaces and underscores; only the form token() writes passes.
    if not sep or not rid.isdigit() or not 0 < found.id <= _MAX_ID:
        raise Invalid("not a cursor this gateway gave")
    return found


@dataclass(frozen=True, slots=True)
class Filters:
    """The filters of :func:`gigmcp.control.audit.events`, kept together so that a page, its
    next page and an export ask exactly the same thing."""

    action: str | None = None
    user_id: int | None = None
    profile: str | None = None
    server: str | None = None
    tool: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def page(
    engine: Engine,
    actor: Actor,
    filters: Filters,
    after: audit.Cursor | None = None,
    limit: int = 50,
) -> audit.AuditPage:
    return audit.events(engine, actor, after, limit, **asdict(filters))


@dataclass(frozen=True, slots=True)
class Names:
    """Slugs and user names behind the ids of some rows: only those the actor may see."""

    profiles: dict[int, str] = field(default_factory=dict)
    users: dict[int, str] = field(default_factory=dict)


def names(engine: Engine, actor: Actor, entries: Iterable[audit.AuditEntry]) -> Names:
    """Two queries at most, whatever the rows: their profiles, then their users."""
    entries = list(entries)
    pids = {e.profile_id for e in entries if e.profile_id is not None}
    uids = {e.user_id for e in entries if e.user_id is not None}
    found = Names()
    with Session(engine) as s:
        if pids:
            query = select(Profile.id, Profile.slug).where(Profile.id.in_(pids))
            if not actor.admin:
                query = query.where(Profile.owner_id == actor.user_id)
            found.profiles.update((pid, slug) for pid, slug in s.execute(query))
        # A user's pages hold only their own rows; the guard is for any other caller.
        if not actor.admin:
            uids &= {actor.user_id}
        if uids:
            for u in s.scalars(select(User).where(User.id.in_(uids))):
                found.users[u.id] = u.name or u.email or u.subject
    return found


@dataclass(frozen=True, slots=True)
class Chunk:
    """One keyset page of an export, with its names."""

    items: tuple[audit.AuditEntry, ...]
    names: Names
    # Set on the last chunk when the cap ended the export before the oldest match:
    # where the rest begins.
    rest: audit.Cursor | None = None


def walk(
    engine: Engine,
    actor: Actor,
    filters: Filters,
    after: audit.Cursor | None = None,
    cap: int = EXPORT_CAP,
) -> Iterator[Chunk]:
    """Every row ``filters`` match, newest first, up to ``cap``, a page at a time. Lazy:
    nothing is read before the first ``next()``, and each page only when it is asked
    for, so a slow reader holds one page and the database is never asked for more."""
    if cap < 1:
        raise Invalid(f"cap must be positive, not {cap}")
    left = cap
    while left > 0:
        found = page(engine, actor, filters, after, min(audit.MAX_PAGE, left))
        left -= len(found.items)
        after = found.next
        if found.items:
            yield Chunk(
                found.items, names(engine, actor, found.items), after if left <= 0 else None
            )
        if after is None:
            return
