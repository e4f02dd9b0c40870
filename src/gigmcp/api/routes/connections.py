"""Connected accounts: administrators' OAuth apps per vendor (``/api/v1/oauth-apps``) and
each user's connections (``/api/v1/connections``).

Owns translating these to the service layer (``control/oauth.py``). A client secret goes
in, once, and never comes out; no token ever comes out. Connecting is a browser's
business (the vendor's consent page, then the callback at ``/connections/<vendor>/
callback``, which the dashboard serves): ``POST /api/v1/connections/<vendor>`` answers
the authorization URL to send the browser to, and only to a browser session, since the
callback is bound to it. It must never decide who may see what (the service layer
does)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from gigmcp.api.auth import Principal, config, principal
from gigmcp.control import oauth
from gigmcp.errors import ConfigurationError, Invalid
from gigmcp.oauthclient.outbound import Outbound

router = APIRouter(prefix="/api/v1")
Caller = Annotated[Principal, Depends(principal)]


class AppIn(BaseModel):
    vendor: str = Field(max_length=64, description="The vendor's slug, as manifests name it.")
    client_id: str = Field(max_length=512)
    client_secret: str | None = Field(
        default=None,
        max_length=4096,
        description="Write-only. Omitted on an update: the stored one stays.",
    )
    display_name: str | None = Field(default=None, max_length=255)
    issuer: str | None = Field(
        default=None,
        max_length=2048,
        description="Its metadata (RFC 8414 or OpenID Connect discovery) gives the "
        "endpoints not given here.",
    )
    authorization_endpoint: str | None = Field(default=None, max_length=2048)
    token_endpoint: str | None = Field(default=None, max_length=2048)
    revocation_endpoint: str | None = Field(default=None, max_length=2048)
    auth_method: str = Field(
        default="client_secret_basic",
        description="client_secret_basic, client_secret_post, or none (a public client).",
    )
    pkce: bool = True
    resource: str | None = Field(
        default=None,
        max_length=2048,
        description="RFC 8707: sent in the authorization request, code exchange and refresh.",
    )
    default_scopes: list[str] = Field(default_factory=list, max_length=64)
    extra_params: dict[str, str] = Field(
        default_factory=dict,
        description="Extra authorization request parameters (access_type=offline, prompt=...).",
    )
    api_hosts: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="The vendor's API hosts (or *.suffix): a connected account's token is "
        "injected only toward hosts that are both a server credential's and these.",
    )

    def spec(self) -> oauth.AppSpec:
        fields = self.model_dump()
        secret = fields.pop("client_secret")
        fields["default_scopes"] = tuple(fields["default_scopes"])
        fields["api_hosts"] = tuple(fields["api_hosts"])
        return oauth.AppSpec(**fields, client_secret=secret.encode() if secret else None)


class AppOut(BaseModel):
    vendor: str
    display_name: str
    issuer: str | None
    authorization_endpoint: str
    token_endpoint: str
    revocation_endpoint: str | None
    client_id: str
    auth_method: str
    has_secret: bool = Field(description="Whether a client secret is stored (never the secret).")
    pkce: bool
    resource: str | None
    default_scopes: list[str]
    extra_params: dict[str, str]
    api_hosts: list[str]
    wanted_scopes: list[str] = Field(
        description="The default scopes and those installed servers declare for this vendor."
    )
    connections: int | None = Field(description="How many users connected (administrators only).")
    updated_at: datetime


class ConnectionOut(BaseModel):
    vendor: str
    display_name: str
    status: str = Field(description="connected, reconnect (the vendor refused), not-connected.")
    wanted_scopes: list[str]
    granted_scopes: list[str]
    needs_consent: bool = Field(
        description="Servers now want scopes this connection was not asked for: connect again."
    )
    expires_at: datetime | None = Field(description="When the current access token expires.")
    refreshed_at: datetime | None
    connected_at: datetime | None
    problem: str | None = Field(description="Why the last refresh failed, if it did.")


class ConnectStart(BaseModel):
    authorize_url: str = Field(description="Send the browser here; it comes back to the dashboard.")


class DisconnectedOut(BaseModel):
    vendor: str
    revoked: bool = Field(description="Whether the vendor was told to revoke the grant (RFC 7009).")
    problem: str | None


def _outbound(request: Request) -> Outbound:
    return config(request).outbound or Outbound()


def _keyring(request: Request):  # type: ignore[no-untyped-def]
    keyring = config(request).keyring
    if keyring is None:
        raise ConfigurationError("the vault is not open on this gateway")
    return keyring


def _app_out(info: oauth.AppInfo) -> AppOut:
    return AppOut.model_validate(dataclasses.asdict(info))


@router.get("/oauth-apps")
def list_apps(caller: Caller, request: Request) -> list[AppOut]:
    return [_app_out(a) for a in oauth.list_apps(config(request).engine, caller.actor)]


@router.post("/oauth-apps", status_code=201)
def create_app(body: AppIn, caller: Caller, request: Request) -> AppOut:
    cfg = config(request)
    info = oauth.save_app(
        cfg.engine, _keyring(request), _outbound(request), caller.actor, body.spec(), create=True
    )
    return _app_out(info)


@router.put("/oauth-apps/{vendor}")
def update_app(vendor: str, body: AppIn, caller: Caller, request: Request) -> AppOut:
    if body.vendor != vendor:
        raise Invalid("the body names another vendor than the URL")
    cfg = config(request)
    info = oauth.save_app(
        cfg.engine, _keyring(request), _outbound(request), caller.actor, body.spec(), create=False
    )
    return _app_out(info)


@router.delete("/oauth-apps/{vendor}", status_code=204)
def delete_app(vendor: str, caller: Caller, request: Request) -> None:
    cfg = config(request)
    oauth.delete_app(cfg.engine, _keyring(request), _outbound(request), caller.actor, vendor)


@router.get("/connections")
def list_connections(caller: Caller, request: Request) -> list[ConnectionOut]:
    found = oauth.list_connections(config(request).engine, caller.actor)
    return [ConnectionOut.model_validate(dataclasses.asdict(c)) for c in found]


@router.post("/connections/{vendor}")
def connect(vendor: str, caller: Caller, request: Request) -> ConnectStart:
    if caller.session is None:
        raise Invalid(
            "connect an account from a browser signed in to the dashboard: the vendor's "
            "answer comes back to that browser session"
        )
    cfg = config(request)
    url = oauth.begin_connect(
        cfg.engine, _keyring(request), caller.actor, vendor,
        oauth.binding(caller.session.id), cfg.public_origin,
    )  # fmt: skip
    return ConnectStart(authorize_url=url)


@router.delete("/connections/{vendor}")
def disconnect(vendor: str, caller: Caller, request: Request) -> DisconnectedOut:
    cfg = config(request)
    done = oauth.disconnect(cfg.engine, _keyring(request), _outbound(request), caller.actor, vendor)
    return DisconnectedOut(vendor=done.vendor, revoked=done.revoked, problem=done.problem)
