"""Users (administrators) and impersonation: ``/api/v1/users`` and
``/api/v1/impersonation``.

Owns translating these to ``control/users.py`` and ``control/impersonation.py``, and the
gate: impersonation exists only when the gateway enables it, and only from a browser
session. It must never decide who is an administrator (the service layer does)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from gigmcp.api.auth import Principal, config, principal
from gigmcp.control import impersonation, users
from gigmcp.errors import Forbidden, NotFound

router = APIRouter(prefix="/api/v1")
Caller = Annotated[Principal, Depends(principal)]


@router.get("/users")
def list_users(caller: Caller, request: Request) -> list[users.UserInfo]:
    # The service layer's own type is the response: its fields are the API's.
    return list(users.list_users(config(request).engine, caller.actor))


class ImpersonateIn(BaseModel):
    user_id: int
    minutes: int = Field(default=30, ge=1, le=impersonation.MAX_MINUTES)


class ImpersonationOut(BaseModel):
    user_id: int
    until: datetime


@router.post("/impersonation", status_code=201)
def start(body: ImpersonateIn, caller: Caller, request: Request) -> ImpersonationOut:
    cfg = config(request)
    if not cfg.impersonation:
        raise NotFound("impersonation is off (GIG_IMPERSONATION=on enables it)")
    if caller.session is None:
        raise Forbidden("impersonation starts from a signed-in browser, not with a token")
    until = impersonation.start(cfg.engine, caller.session, body.user_id, body.minutes)
    return ImpersonationOut(user_id=body.user_id, until=until)


@router.delete("/impersonation", status_code=204)
def stop(caller: Caller, request: Request) -> None:
    if caller.session is not None:
        impersonation.stop(config(request).engine, caller.session)
