"""The catalog from the signed index, and installing from it in two steps:
``/api/v1/catalog`` and ``/api/v1/installs``.

Owns turning the service layer's index and install plans into JSON: the list (search
by text, filter by category and tier), an entry's detail (tier, the hosts it may
reach, the credentials it needs, its tools and which start disabled, version, digest),
the consent text with its digest, and the install that acts only on that digest. The
index is fetched and verified by the service layer at every call (the last good copy
and the rollback checks live there). It must never install without the digest of the
consent the caller was shown, and never decide who may install (the service layer
does).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from gigmcp.api.auth import Principal, config, principal
from gigmcp.api.context import ApiConfig
from gigmcp.control import installs
from gigmcp.control.actor import Actor
from gigmcp.errors import ConfigurationError
from gigmcp.installer.index_fetch import Fetched, RegistrySource
from gigmcp.registry.manifest import Manifest

router = APIRouter(prefix="/api/v1")
Caller = Annotated[Principal, Depends(principal)]


class EntryOut(BaseModel):
    name: str
    version: str
    display_name: str
    description: str
    category: str
    tier: str


class CredentialNeed(BaseModel):
    id: str
    type: str
    provider: str


class ToolOut(BaseModel):
    name: str
    enabled_by_default: bool


class EntryDetail(EntryOut):
    ref: str
    hosts: list[str]
    credentials: list[CredentialNeed]
    tools: list[ToolOut]
    image_digest: str | None


class ConsentOut(BaseModel):
    server: str
    ref: str
    kind: str
    lines: list[str]
    digest: str = Field(description="Send it back to POST /installs to act on this text.")


class InstallIn(BaseModel):
    ref: str = Field(min_length=1, max_length=255)
    name: str | None = Field(default=None, max_length=63)
    consent_digest: str = Field(pattern=r"^[0-9a-f]{64}$")


class Installed(BaseModel):
    server: str
    ref: str
    kind: str


def _source(cfg: ApiConfig) -> RegistrySource:
    if cfg.registry is None:
        raise ConfigurationError(
            "no registry configured (GIG_REGISTRY_INDEX_URL and GIG_REGISTRY_PUBKEY)"
        )
    return cfg.registry


def _fetch(cfg: ApiConfig, actor: Actor) -> Fetched:
    # Browsing: an index verified in the last minute is reused (installs fetch anew).
    return installs.browse_index(cfg.engine, actor, _source(cfg))


def _entry(m: Manifest) -> EntryOut:
    return EntryOut(
        name=m.name,
        version=m.version,
        display_name=m.display_name,
        description=m.description,
        category=m.category,
        tier=m.tier,
    )


@router.get("/catalog")
def catalog(
    caller: Caller,
    request: Request,
    q: str | None = None,
    category: str | None = None,
    tier: str | None = None,
) -> list[EntryOut]:
    fetched = _fetch(config(request), caller.actor)
    needle = (q or "").strip().lower()
    out = []
    for m in fetched.index.manifests():
        if category is not None and m.category != category:
            continue
        if tier is not None and m.tier != tier:
            continue
        text = f"{m.name} {m.display_name} {m.description}".lower()
        if needle and needle not in text:
            continue
        out.append(_entry(m))
    return out


@router.get("/catalog/{ref}")
def entry(ref: str, caller: Caller, request: Request) -> EntryDetail:
    fetched = _fetch(config(request), caller.actor)
    m = fetched.index.resolve(ref)
    return EntryDetail(
        **_entry(m).model_dump(),
        ref=m.ref,
        hosts=list(m.entitlements.egress),
        credentials=[
            CredentialNeed(id=c.id, type=c.type, provider=c.provider) for c in m.credentials
        ],
        tools=[ToolOut(name=t.name, enabled_by_default=t.default) for t in m.tools],
        image_digest=m.image.digest or None,
    )


@router.get("/catalog/{ref}/consent")
def consent(ref: str, caller: Caller, request: Request, name: str | None = None) -> ConsentOut:
    """The first step: exactly what installing ``ref`` (as ``name``) asks consent to."""
    cfg = config(request)
    plan = asyncio.run(
        installs.plan_from_registry(cfg.engine, caller.actor, cfg.registry, ref, name)
    )
    return ConsentOut(
        server=plan.server,
        ref=plan.ref,
        kind=plan.kind,
        lines=list(plan.consent),
        digest=installs.consent_digest(plan),
    )


@router.post("/installs", status_code=201)
def install(body: InstallIn, caller: Caller, request: Request) -> Installed:
    """The second step: install, if what would be installed is still what the consent
    with ``consent_digest`` showed."""
    cfg = config(request)
    if cfg.install_target is None:
        raise ConfigurationError("this gateway has no packages folder to install into")
    plan = asyncio.run(
        installs.plan_from_registry(cfg.engine, caller.actor, cfg.registry, body.ref, body.name)
    )
    asyncio.run(
        installs.install_agreed(
            cfg.engine, caller.actor, cfg.install_target, plan, body.consent_digest
        )
    )
    return Installed(server=plan.server, ref=plan.ref, kind=plan.kind)


@router.delete("/installs/{server}", status_code=204)
def uninstall(server: str, caller: Caller, request: Request) -> None:
    cfg = config(request)
    if cfg.install_target is None:
        raise ConfigurationError("this gateway has no packages folder")
    installs.uninstall(cfg.engine, caller.actor, cfg.install_target.packages_dir, server)
