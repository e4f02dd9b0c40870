"""Profiles, their servers and tools, and the profile tokens clients connect with.

Owns ``/api/v1/profiles`` and ``/api/v1/profile-tokens``. A token is returned once,
at minting, with configuration ready to paste into the clients people use (built by
``control/clientconfig.py``, as the dashboard's is). It must never decide who may see
what (the service layer does) or return a token again."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from gigmcp.api.auth import Principal, config, principal
from gigmcp.control import clientconfig, profiles, tokens, tools

router = APIRouter(prefix="/api/v1")
Caller = Annotated[Principal, Depends(principal)]
SLUG = r"^[a-z0-9][a-z0-9-]{1,62}$"


class ProfileIn(BaseModel):
    slug: str = Field(pattern=SLUG)


class ProfileOut(BaseModel):
    slug: str
    servers: list[str]


class ToolOut(BaseModel):
    tool: str
    enabled: bool


class AssignmentOut(BaseModel):
    server: str
    default_enabled: bool
    tools: list[ToolOut]


class ProfileDetailOut(BaseModel):
    slug: str
    assignments: list[AssignmentOut]


class AssignIn(BaseModel):
    tools_enabled_by_default: bool = True


class ToolIn(BaseModel):
    enabled: bool


@router.get("/profiles")
def list_profiles(
    caller: Caller, request: Request, after: str | None = None, limit: int = 100
) -> list[ProfileOut]:
    """A page of profiles by slug; the next page: ``after=<the last slug>``."""
    return [
        ProfileOut(slug=p.slug, servers=list(p.servers))
        for p in profiles.list_profiles(config(request).engine, caller.actor, after, limit)
    ]


@router.post("/profiles", status_code=201)
def create_profile(body: ProfileIn, caller: Caller, request: Request) -> ProfileDetailOut:
    engine = config(request).engine
    profiles.create_profile(engine, caller.actor, body.slug)
    return _detail(request, caller, body.slug)


@router.get("/profiles/{slug}")
def show_profile(slug: str, caller: Caller, request: Request) -> ProfileDetailOut:
    return _detail(request, caller, slug)


class RenameIn(BaseModel):
    slug: str = Field(pattern=SLUG)


@router.patch("/profiles/{slug}")
def rename_profile(slug: str, body: RenameIn, caller: Caller, request: Request) -> ProfileDetailOut:
    profiles.rename_profile(config(request).engine, caller.actor, slug, body.slug)
    return _detail(request, caller, body.slug)


@router.delete("/profiles/{slug}", status_code=204)
def delete_profile(slug: str, caller: Caller, request: Request) -> None:
    profiles.delete_profile(config(request).engine, caller.actor, slug)


@router.put("/profiles/{slug}/servers/{server}", status_code=204)
def assign(slug: str, server: str, body: AssignIn, caller: Caller, request: Request) -> None:
    profiles.assign(
        config(request).engine, caller.actor, slug, server, body.tools_enabled_by_default
    )


@router.delete("/profiles/{slug}/servers/{server}", status_code=204)
def unassign(slug: str, server: str, caller: Caller, request: Request) -> None:
    profiles.unassign(config(request).engine, caller.actor, slug, server)


@router.put("/profiles/{slug}/servers/{server}/tools/{tool}", status_code=204)
def set_tool(
    slug: str, server: str, tool: str, body: ToolIn, caller: Caller, request: Request
) -> None:
    tools.set_tool(config(request).engine, caller.actor, slug, server, tool, body.enabled)


def _detail(request: Request, caller: Principal, slug: str) -> ProfileDetailOut:
    d = profiles.show_profile(config(request).engine, caller.actor, slug)
    return ProfileDetailOut(
        slug=d.slug,
        assignments=[
            AssignmentOut(
                server=a.server,
                default_enabled=a.default_enabled,
                tools=[ToolOut(tool=t.tool, enabled=t.enabled) for t in a.tools],
            )
            for a in d.assignments
        ],
    )


# --- profile tokens --------------------------------------------------------------------


class TokenIn(BaseModel):
    name: str | None = Field(default=None, max_length=tokens.MAX_NAME)
    expires_in_days: int | None = Field(default=None, ge=1, le=tokens.MAX_LIFETIME_DAYS)


class TokenOut(BaseModel):
    id: int
    profile: str
    display: str
    name: str | None
    revoked: bool
    expires_at: datetime | None
    last_used_at: datetime | None


class TokenMinted(BaseModel):
    token: str = Field(description="Shown once: store it now.")
    url: str
    clients: dict[str, object] = Field(
        description="Ready-to-paste configuration, one entry per client: "
        + ", ".join(clientconfig.CLIENTS)
        + " (a command, or a configuration file's JSON)."
    )


@router.get("/profile-tokens")
def list_tokens(caller: Caller, request: Request, profile: str | None = None) -> list[TokenOut]:
    return [
        TokenOut.model_validate(t, from_attributes=True)
        for t in tokens.list_tokens(config(request).engine, caller.actor, profile)
    ]


@router.post("/profiles/{slug}/tokens", status_code=201)
def mint_token(
    slug: str, body: TokenIn, caller: Caller, request: Request, response: Response
) -> TokenMinted:
    cfg = config(request)
    ttl = timedelta(days=body.expires_in_days) if body.expires_in_days else None
    token = tokens.mint_token(cfg.engine, caller.actor, slug, body.name, ttl)
    url = clientconfig.endpoint(cfg.public_origin, slug)
    response.headers["Cache-Control"] = "no-store"
    return TokenMinted(token=token, url=url, clients=clientconfig.for_clients(slug, url, token))


@router.delete("/profile-tokens/{token_id}", status_code=204)
def revoke_token(token_id: int, caller: Caller, request: Request) -> None:
    tokens.revoke_token(config(request).engine, caller.actor, token_id)
