"""Servers, their tools' pins, credentials (write-only) and audit rows:
``/api/v1/servers``, ``/api/v1/credentials``, ``/api/v1/audit``.

Owns translating these to the service layer. A credential value goes in, once, and never
comes out: not in a response, an error, or a log. Audit pages are keyset-paged with an
opaque cursor. It must never decide who may see what (the service layer does)."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from gigmcp.api.auth import Principal, config, principal
from gigmcp.control import audit, credentials, overview, pins, servers
from gigmcp.errors import ConfigurationError, Invalid

router = APIRouter(prefix="/api/v1")
Caller = Annotated[Principal, Depends(principal)]


class ServerOut(BaseModel):
    name: str
    command: list[str]
    cwd: str | None
    rootfs: str | None


@router.get("/servers")
def list_servers(caller: Caller, request: Request) -> list[ServerOut]:
    return [
        ServerOut(name=s.name, command=list(s.command), cwd=s.cwd, rootfs=s.rootfs)
        for s in servers.list_servers(config(request).engine, caller.actor)
    ]


class LogOut(BaseModel):
    lines: list[str]


@router.get("/servers/{name}/logs")
def logs(name: str, profile: str, caller: Caller, request: Request, lines: int = 100) -> LogOut:
    cfg = config(request)
    if not 1 <= lines <= 5000:
        raise Invalid("lines: 1 to 5000")
    if cfg.logs_dir is None:
        raise ConfigurationError("this gateway keeps no instance logs")
    return LogOut(
        lines=servers.log_lines(cfg.engine, caller.actor, cfg.logs_dir, profile, name, lines)
    )


class PinOut(BaseModel):
    tool: str
    fingerprint: str
    snapshot: dict[str, Any]
    changed: bool
    flagged_fingerprint: str | None
    flagged_snapshot: dict[str, Any] | None


@router.get("/servers/{name}/pins")
def list_pins(name: str, caller: Caller, request: Request) -> list[PinOut]:
    return [
        PinOut(
            tool=p.tool,
            fingerprint=p.fingerprint,
            snapshot=p.snapshot,
            changed=p.flagged_fingerprint is not None,
            flagged_fingerprint=p.flagged_fingerprint,
            flagged_snapshot=p.flagged_snapshot,
        )
        for p in pins.list_pins(config(request).engine, caller.actor, name)
    ]


class Approved(BaseModel):
    fingerprint: str


@router.post("/servers/{name}/pins/{tool}/approve")
def approve(name: str, tool: str, caller: Caller, request: Request) -> Approved:
    return Approved(fingerprint=pins.approve(config(request).engine, caller.actor, name, tool))


# --- credentials (write-only) ------------------------------------------------------------


class CredentialOut(BaseModel):
    server: str
    credential_id: str
    kind: str
    is_set: bool


class CredentialIn(BaseModel):
    value: str = Field(min_length=1, max_length=credentials.MAX_VALUE, repr=False)


@router.get("/credentials")
def list_credentials(caller: Caller, request: Request) -> list[CredentialOut]:
    return [
        CredentialOut.model_validate(c, from_attributes=True)
        for c in credentials.list_credentials(config(request).engine, caller.actor)
    ]


@router.put("/servers/{name}/credentials/{credential_id}", status_code=204)
def set_credential(
    name: str, credential_id: str, body: CredentialIn, caller: Caller, request: Request
) -> None:
    cfg = config(request)
    if cfg.keyring is None:
        raise ConfigurationError("the vault is not open on this gateway")
    credentials.set_credential(
        cfg.engine, cfg.keyring, caller.actor, name, credential_id, body.value.encode()
    )


@router.delete("/servers/{name}/credentials/{credential_id}", status_code=204)
def unset_credential(name: str, credential_id: str, caller: Caller, request: Request) -> None:
    credentials.unset_credential(config(request).engine, caller.actor, name, credential_id)


# --- audit -------------------------------------------------------------------------------


class AuditPageOut(BaseModel):
    items: list[audit.AuditEntry]
    next: str | None = Field(description="Pass as ?after= for the next (older) page.")


class AuditQuery(BaseModel):
    """The audit page's query: a cursor, a size, and the service layer's filters."""

    after: str | None = None
    limit: int = 50
    action: str | None = None
    user_id: int | None = None
    profile: str | None = None
    server: str | None = None
    tool: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@router.get("/audit")
def audit_page(
    caller: Caller, request: Request, query: Annotated[AuditQuery, Query()]
) -> AuditPageOut:
    filters = query.model_dump(exclude={"after"})
    page = audit.events(config(request).engine, caller.actor, _cursor(query.after), **filters)
    return AuditPageOut(
        items=list(page.items),
        next=_token(page.next) if page.next else None,
    )


def _token(cursor: audit.Cursor) -> str:
    raw = f"{cursor.at.isoformat()}|{cursor.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor(token: str | None) -> audit.Cursor | None:
    if token is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        at, _, rid = raw.partition("|")
        return audit.Cursor(datetime.fromisoformat(at), int(rid))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Invalid("after: not a cursor this API gave") from None


# --- overview ----------------------------------------------------------------------------


@router.get("/overview")
def get_overview(
    caller: Caller, request: Request, days: int = 182, top: int = 10
) -> overview.Overview:
    """Calls and errors per day, the busiest servers (with their weeks) and tools, and
    egress by decision, from the roll-up counters: the caller's own, or the whole
    gateway's for an administrator."""
    return overview.overview(config(request).engine, caller.actor, days, top)
