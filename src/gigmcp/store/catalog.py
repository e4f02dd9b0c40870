"""The gateway's in-memory snapshot of the store, kept in step by ``config_revision``.

``revision()`` runs on every MCP request, so for SQLite it reads the one-row table through
a dedicated raw ``sqlite3`` connection (microseconds, no ORM). A moved revision reloads
the whole snapshot (profiles, assignments, tool selections, token hashes, which credential
values are set) in one read.
Audit rows and last-used times are queued and written in batches from a thread, so the
event loop never waits on the database. It must never hold a token in clear.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import sqlite3
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session

from gigmcp.auth import tokens
from gigmcp.core import aio
from gigmcp.core.definitions import DefinitionError, parse_credentials, parse_egress
from gigmcp.core.pins import PinBook, PinChange
from gigmcp.core.views import Assignment, AuditEvent, ProfileView, ServerDef, TokenGrant
from gigmcp.store import activity
from gigmcp.store.db import make_engine, migrate
from gigmcp.store.models import (
    AuditRow,
    CredentialValue,
    Profile,
    ProfileServer,
    ProfileToken,
    ProfileTool,
    Server,
    ToolPin,
)

log = logging.getLogger(__name__)
FLUSH_INTERVAL = 1.0


class StoreCatalog:
    def __init__(self, database_url: str) -> None:
        self.engine: Engine = make_engine(database_url)
        migrate(self.engine)
        self._raw: sqlite3.Connection | None = None
        if database_url.startswith("sqlite:///"):
            self._raw = sqlite3.connect(database_url[len("sqlite:///") :], check_same_thread=False)
        self._rev = -1
        self._pin_changes: list[PinChange] = []
        # Taken by a write that has not committed yet: still pending for a reload.
        self._pins_writing: list[PinChange] = []
        self.pins = PinBook(self._queue_pin)
        self._profiles: dict[int, ProfileView] = {}
        self._slugs: dict[str, ProfileView] = {}
        self._tokens: dict[str, tuple[str, TokenGrant, datetime | None]] = {}
        self._audit: list[AuditEvent] = []
        self._used: dict[int, datetime] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._reload()

    # ------------------------------------------------------------ change detection

    def revision(self) -> int:
        if self._raw is not None:
            row = self._raw.execute("SELECT rev FROM config_revision WHERE id = 1").fetchone()
        else:
            with self.engine.connect() as conn:
                row = conn.execute(text("SELECT rev FROM config_revision WHERE id = 1")).fetchone()
        return int(row[0]) if row else 0

    def refresh(self) -> int:
        rev = self.revision()
        if rev != self._rev:
            self._reload()
        return self._rev

    def _reload(self) -> None:
        with Session(self.engine) as s:
            rev = s.scalar(text("SELECT rev FROM config_revision WHERE id = 1")) or 0
            self.pins.load(
                ((p.server_id, p.tool, p.fingerprint, p.flagged_fingerprint)
                 for p in s.scalars(select(ToolPin))),
                [*self._pins_writing, *self._pin_changes],
            )  # fmt: skip
            servers = {srv.id: srv for srv in s.scalars(select(Server))}
            overrides: dict[int, list[tuple[str, bool]]] = {}
            for pt in s.scalars(select(ProfileTool).order_by(ProfileTool.tool)):
                overrides.setdefault(pt.assignment_id, []).append((pt.tool, pt.enabled))
            owners = {p.id: p.owner_id for p in s.scalars(select(Profile))}
            # Which values each (owner, server) has: ids only, the ciphertext stays put.
            values: dict[tuple[int, int], list[tuple[str, str]]] = {}
            for owner_id, server_id, credential_id, record_id in s.execute(
                select(
                    CredentialValue.owner_id,
                    CredentialValue.server_id,
                    CredentialValue.credential_id,
                    CredentialValue.record_id,
                )
            ):
                values.setdefault((owner_id, server_id), []).append((credential_id, record_id))
            assigned: dict[int, list[Assignment]] = {}
            for a in s.scalars(select(ProfileServer).order_by(ProfileServer.id)):
                srv = servers[a.server_id]
                owned = values.get((owners.get(a.profile_id, srv.owner_id), srv.id), [])
                sdef = ServerDef(
                    id=srv.id,
                    name=srv.name,
                    owner_id=srv.owner_id,
                    command=tuple(srv.command),
                    env=tuple(sorted(srv.env.items())),
                    env_names=tuple(srv.env_names),
                    cwd=srv.cwd,
                    limits=tuple(sorted((srv.limits or {}).items())),
                    rootfs=(srv.origin or {}).get("rootfs"),
                    remote_url=_remote_url(srv.origin),
                    credential_values=tuple(sorted(owned)),
                    **_egress_and_credentials(srv),
                )
                assigned.setdefault(a.profile_id, []).append(
                    Assignment(sdef, a.default_enabled, tuple(overrides.get(a.id, ())))
                )
            profiles = {
                p.id: ProfileView(p.id, p.slug, p.owner_id, tuple(assigned.get(p.id, ())))
                for p in s.scalars(select(Profile))
            }
            # Keep unchanged views identical so hubs can tell "nothing moved" by identity.
            for pid, view in profiles.items():
                old = self._profiles.get(pid)
                if old == view:
                    profiles[pid] = old
            token_map: dict[str, tuple[str, TokenGrant, datetime | None]] = {}
            for t in s.scalars(select(ProfileToken).where(ProfileToken.revoked_at.is_(None))):
                prof = profiles.get(t.profile_id)
                if prof is None:
                    continue
                expires = _aware(t.expires_at)
                grant = TokenGrant(t.id, t.profile_id, prof.slug, t.owner_id, expires)
                token_map[t.token_hash] = (t.token_hash, grant, expires)
        self._profiles = profiles
        self._slugs = {p.slug: p for p in profiles.values()}
        self._tokens = token_map
        self._rev = rev

    # ------------------------------------------------------------ Catalog

    def authenticate(self, token: str) -> TokenGrant | None:
        if not tokens.well_formed(token):
            return None
        self.refresh()
        computed = tokens.digest(token)
        entry = self._tokens.get(computed)
        if entry is None:
            return None
        stored, grant, expires = entry
        if not hmac.compare_digest(computed.encode(), stored.encode()):
            return None
        now = datetime.now(UTC)
        if expires is not None and expires <= now:
            return None
        self._used[grant.token_id] = now
        return grant

    def live_token_ids(self) -> frozenset[int]:
        now = datetime.now(UTC)
        return frozenset(
            grant.token_id
            for _stored, grant, expires in self._tokens.values()
            if expires is None or expires > now
        )

    def profile(self, profile_id: int) -> ProfileView | None:
        return self._profiles.get(profile_id)

    def profile_by_slug(self, slug: str) -> ProfileView | None:
        return self._slugs.get(slug)

    def record(self, event: AuditEvent) -> None:
        self._audit.append(event)

    def _queue_pin(self, change: PinChange) -> None:
        self._pin_changes.append(change)
        if change.flagged:
            self.record(
                AuditEvent(
                    action="tool.changed",
                    outcome="hidden",
                    server=change.server,
                    tool=change.tool,
                    detail=(
                        "the tool's description or input schema changed after consent; "
                        f"hidden until approved (gigmcp server tools {change.server} "
                        f"--approve {change.tool})"
                    )[:1024],
                )
            )

    # ------------------------------------------------------------ background writes

    async def start(self) -> None:
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            await self.flush()

    async def flush(self) -> None:
        audit, self._audit = self._audit, []
        used, self._used = self._used, {}
        pins, self._pin_changes = self._pin_changes, []
        if audit or used or pins:
            self._pins_writing = pins
            try:
                await asyncio.to_thread(self._write, audit, used, pins)
            except Exception:
                log.exception("audit flush failed; %d rows kept for the next try", len(audit))
                self._audit[:0] = audit
                self._pin_changes[:0] = pins
            finally:
                self._pins_writing = []

    def _write(
        self,
        audit: list[AuditEvent],
        used: dict[int, datetime],
        pins: list[PinChange] | None = None,
    ) -> None:
        with Session(self.engine) as s, s.begin():
            for change in pins or ():
                _write_pin(s, change)
            s.add_all(
                AuditRow(
                    at=e.at,
                    action=e.action,
                    outcome=e.outcome,
                    user_id=e.user_id,
                    profile_id=e.profile_id,
                    server=e.server,
                    tool=e.tool,
                    duration_ms=e.duration_ms,
                    arg_bytes=e.arg_bytes,
                    detail=e.detail,
                )
                for e in audit
            )
            activity.add_calls(
                s,
                (
                    activity.Call(e.at, e.user_id, e.server, e.tool, e.outcome != "ok")
                    for e in audit
                    if e.action == activity.CALL
                ),
            )
            for token_id, at in used.items():
                # Last-used is bookkeeping: it does not bump the revision.
                s.execute(
                    update(ProfileToken).where(ProfileToken.id == token_id).values(last_used_at=at)
                )

    async def aclose(self) -> None:
        await aio.stop(self._flusher)
        self._flusher = None
        await self.flush()
        if self._raw is not None:
            self._raw.close()
        self.engine.dispose()


def _write_pin(s: Session, change: PinChange) -> None:
    # Idempotent: a reload may re-pin what is still queued, and a server deleted since
    # takes its pins with it.
    if s.get(Server, change.server_id) is None:
        return
    row = s.scalar(
        select(ToolPin).where(ToolPin.server_id == change.server_id, ToolPin.tool == change.tool)
    )
    now = datetime.now(UTC)
    if row is None:
        if not change.flagged:
            s.add(
                ToolPin(
                    server_id=change.server_id,
                    tool=change.tool,
                    fingerprint=change.fingerprint,
                    snapshot=change.snapshot,
                    pinned_at=now,
                )
            )
        return
    if change.flagged and row.fingerprint != change.fingerprint:
        row.flagged_fingerprint = change.fingerprint
        row.flagged_snapshot = change.snapshot
        row.flagged_at = now


def _aware(at: datetime | None) -> datetime | None:
    if at is None or at.tzinfo is not None:
        return at
    return at.replace(tzinfo=UTC)  # SQLite drops the zone; we only ever store UTC


__all__ = ["StoreCatalog"]


def _remote_url(origin: dict[str, Any] | None) -> str | None:
    """A remote server's URL (``origin`` kind ``remote``, control/servers.py)."""
    if origin is not None and origin.get("kind") == "remote":
        url = origin.get("url")
        return url if isinstance(url, str) else None
    return None


def _egress_and_credentials(srv: Server) -> dict[str, Any]:
    # Stored definitions were checked when written; one that no longer parses (a rule
    # tightened since) leaves the server with no egress rather than stopping the catalog.
    try:
        egress = parse_egress(srv.egress)
        return {"egress": egress, "credentials": parse_credentials(srv.credentials, egress)}
    except DefinitionError as exc:
        log.error(
            "server %s: stored egress/credentials are invalid (%s); egress off", srv.name, exc
        )
        return {}
