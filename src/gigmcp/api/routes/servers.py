"""Servers (with the caller's instances of each), their tools' pins, credentials
(write-only) and audit rows: ``/api/v1/servers``, ``/api/v1/credentials``,
``/api/v1/audit``.

Owns translating these to the service layer. A credential value goes in, once, and never
comes out: not in a response, an error, or a log. Audit pages are keyset-paged with an
opaque cursor. It must never decide who may see what (the service layer does)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, get_type_hints

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field, create_model

from gigmcp.api.auth import Principal, config, principal
from gigmcp.control import audit, auditexport, credentials, instances, overview, pins, servers
from gigmcp.core.instances import InstanceState
from gigmcp.errors import ConfigurationError, Invalid

router = APIRouter(prefix="/api/v1")
Caller = Annotated[Principal, Depends(principal)]


class InstanceOut(BaseModel):
    profile: str = Field(description="The profile (slug) this instance serves.")
    state: InstanceState = Field(
        description="running; starting; idle (no process: the next call starts one); "
        "crashed (the last process ended on its own or could not start)."
    )
    restarts: int = Field(description="Restarts after a crash since the gateway started.")
    last_error: str | None = Field(
        description="The last crash or failed start: an exit status, or a reference to "
        "the line of the instance's log with the cause."
    )
    memory_bytes: int | None = Field(
        description="Memory charged to the instance's cgroup (jailed and running only)."
    )
    started_at: datetime | None
    last_used: datetime | None


class ServerOut(BaseModel):
    name: str
    command: list[str]
    cwd: str | None
    rootfs: str | None
    instances: list[InstanceOut] = Field(
        description="The caller's instances of this server, one per profile it is "
        "assigned to (every profile's, for an administrator)."
    )


@router.get("/servers")
def list_servers(caller: Caller, request: Request) -> list[ServerOut]:
    cfg = config(request)
    snapshot = cfg.instances() if cfg.instances is not None else None
    mine: defaultdict[str, list[InstanceOut]] = defaultdict(list)
    for i in instances.visible(cfg.engine, caller.actor, snapshot):
        mine[i.server].append(
            InstanceOut(
                profile=i.profile,
                state=i.state,
                restarts=i.restarts,
                last_error=i.last_error,
                memory_bytes=i.memory_bytes,
                started_at=i.started_at,
                last_used=i.last_used,
            )
        )
    return [
        ServerOut(
            name=s.name,
            command=list(s.command),
            cwd=s.cwd,
            rootfs=s.rootfs,
            instances=mine.get(s.name, []),
        )
        for s in servers.list_servers(cfg.engine, caller.actor)
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


# The audit page's query: a cursor, a size, and the service layer's filters, whose list
# is written once (auditexport.Filters: the dashboard asks the same).
_FILTERS = {name: (hint, None) for name, hint in get_type_hints(auditexport.Filters).items()}
if TYPE_CHECKING:
    AuditQuery = BaseModel
else:
    AuditQuery = create_model(
        "AuditQuery",
        __doc__="The audit page's query: a cursor, a size, and the service layer's filters.",
        after=(str | None, None),
        limit=(int, 50),
        **_FILTERS,
    )


@router.get("/audit")
def audit_page(
    caller: Caller, request: Request, query: Annotated[AuditQuery, Query()]
) -> AuditPageOut:
    params = query.model_dump()
    try:
        after = auditexport.cursor(params.pop("after"))
    except Invalid as exc:
        raise Invalid(f"after: {exc}") from None
    page = audit.events(config(request).engine, caller.actor, after, **params)
    return AuditPageOut(
        items=list(page.items),
        next=auditexport.token(page.next) if page.next else None,
    )


# --- overview ----------------------------------------------------------------------------


@router.get("/overview")
def get_overview(
    caller: Caller, request: Request, days: int = 182, top: int = 10, tool_days: int = 31
) -> overview.Overview:
    """Calls and errors per day, the busiest servers (with their weeks) and tools (over
    the calendar months the last ``tool_days`` touch), and egress by decision, from the
    roll-up counters: the caller's own, or the whole gateway's for an administrator."""
    return overview.overview(config(request).engine, caller.actor, days, top, tool_days)
