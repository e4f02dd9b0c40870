"""Remote MCP servers, added by URL: ``POST /api/v1/remote-servers``.

Owns translating this to the service layer (``control/remote.py``), which probes the
server, works out its authorization and how the gateway identifies itself there. A
pre-registered client's secret goes in once and never comes out. It must never decide
who may do what (the service layer does)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from gigmcp.api.auth import Principal, config, principal
from gigmcp.control import remote
from gigmcp.errors import ConfigurationError
from gigmcp.oauthclient.outbound import Outbound

router = APIRouter(prefix="/api/v1")
Caller = Annotated[Principal, Depends(principal)]


class RemoteIn(BaseModel):
    name: str = Field(max_length=63, description="The server's name (tools are <name>_<tool>).")
    url: str = Field(max_length=2048, description="Its Streamable HTTP endpoint, https://.")
    client_id: str | None = Field(
        default=None,
        max_length=512,
        description="A client registered by hand at its authorization server: when "
        "given, the gateway identifies itself with it.",
    )
    client_secret: str | None = Field(default=None, max_length=4096, description="Write-only.")
    registration: Literal["auto", "metadata-document", "dynamic", "pre-registered"] = Field(
        default="auto",
        description="How the gateway identifies itself there: auto (a client given, else "
        "its client metadata document where the authorization server takes them and the "
        "public URL is https, else dynamic registration), or one of them by name "
        "(dynamic: for a gateway the vendor cannot reach).",
    )


class RemoteOut(BaseModel):
    name: str
    url: str
    vendor: str | None = Field(
        description="The OAuth app users connect to on the Accounts page (None: the "
        "server asks for no authorization)."
    )
    client: str | None = Field(
        description="How the gateway identifies itself: cimd, registered, pre-registered."
    )


@router.post("/remote-servers", status_code=201)
def add_remote(body: RemoteIn, caller: Caller, request: Request) -> RemoteOut:
    cfg = config(request)
    if cfg.keyring is None:
        raise ConfigurationError("the vault is not open on this gateway")
    client = None
    if body.client_id:
        secret = body.client_secret.encode() if body.client_secret else None
        client = remote.PreRegistered(body.client_id, secret)
    added = remote.add_remote_server(
        cfg.engine, cfg.keyring, cfg.outbound or Outbound(), caller.actor, body.name, body.url,
        cfg.public_origin, client, body.registration,
    )  # fmt: skip
    return RemoteOut(name=added.name, url=added.url, vendor=added.vendor, client=added.client)
