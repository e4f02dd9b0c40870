"""Impersonation, in-process over the real API app and store (SQLite and PostgreSQL): off
unless enabled, only an administrator's browser session, never oneself, read-only while
it lasts (any change refused except ending it), at most an hour, and audited on the
impersonated user's own record with the administrator's name."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2 as httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gigmcp.api.app import build_api
from gigmcp.api.context import ApiConfig
from gigmcp.control import actor, apitokens, profiles, users, websessions
from gigmcp.control.users import Identity, RolePolicy
from gigmcp.store.db import make_engine, migrate
from gigmcp.store.models import AuditRow, WebSession

ORIGIN = "http://127.0.0.1:1"


@dataclass
class World:
    c: httpx.AsyncClient
    admin: actor.Actor
    bob: actor.Actor
    session: websessions.NewSession
    cfg: ApiConfig

    @property
    def h(self) -> dict[str, str]:
        return {"Origin": ORIGIN, "X-CSRF-Token": self.session.csrf}


async def world_of(tmp_path: Path, database_url: str, enabled: bool = True) -> AsyncIterator[World]:
    engine = make_engine(database_url)
    migrate(engine)
    admin = users.sign_in(
        engine, Identity("https://idp.test", "root"), RolePolicy(admin_subjects=frozenset({"root"}))
    )
    bob = users.sign_in(engine, Identity("https://idp.test", "bob"), RolePolicy())
    profiles.create_profile(engine, bob, "bobs")
    cfg = ApiConfig(engine, ORIGIN, False, impersonation=enabled)
    session = websessions.open_session(engine, admin, cfg.lifetimes)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=build_api(cfg)), base_url="http://t"
    ) as c:
        c.cookies.set("gig_session", session.token)
        yield World(c, admin, bob, session, cfg)


@pytest.fixture
async def w(tmp_path: Path, database_url: str) -> AsyncIterator[World]:
    async for world in world_of(tmp_path, database_url):
        yield world


async def test_an_administrator_views_the_gateway_as_a_user_read_only(w: World) -> None:
    r = await w.c.post(
        "/api/v1/impersonation", json={"user_id": w.bob.user_id, "minutes": 10}, headers=w.h
    )
    assert r.status_code == 201, r.text
    me = (await w.c.get("/api/v1/me")).json()
    assert (me["id"], me["impersonating"], me["real_user_id"], me["read_only"]) == (
        w.bob.user_id,
        True,
        w.admin.user_id,
        True,
    )
    assert [p["slug"] for p in (await w.c.get("/api/v1/profiles")).json()] == ["bobs"]
    # Any change is refused, the administrator's own included.
    for method, url, body in (
        ("POST", "/api/v1/profiles", {"slug": "sneaky"}),
        ("DELETE", "/api/v1/profiles/bobs", None),
        ("POST", "/api/v1/profiles/bobs/tokens", {}),
    ):
        r = await w.c.request(method, url, json=body, headers=w.h)
        assert r.status_code == 403, (method, url, r.text)
    # Administrator checks use the real user: the user list still opens.
    assert (await w.c.get("/api/v1/users")).status_code == 200
    # Ending it is the one change allowed.
    assert (await w.c.delete("/api/v1/impersonation", headers=w.h)).status_code == 204
    assert (await w.c.get("/api/v1/me")).json()["id"] == w.admin.user_id
    assert (
        await w.c.post("/api/v1/profiles", json={"slug": "mine"}, headers=w.h)
    ).status_code == 201


async def test_the_impersonated_user_sees_it_in_their_audit_record(w: World) -> None:
    await w.c.post("/api/v1/impersonation", json={"user_id": w.bob.user_id}, headers=w.h)
    await w.c.delete("/api/v1/impersonation", headers=w.h)
    with Session(w.cfg.engine) as s:
        rows = [
            (r.action, r.user_id, r.real_user_id)
            for r in s.scalars(select(AuditRow).where(AuditRow.action.like("impersonation.%")))
        ]
    assert rows == [
        ("impersonation.start", w.bob.user_id, w.admin.user_id),
        ("impersonation.end", w.bob.user_id, w.admin.user_id),
    ]


async def test_impersonation_ends_by_itself_at_its_deadline(w: World) -> None:
    await w.c.post(
        "/api/v1/impersonation", json={"user_id": w.bob.user_id, "minutes": 1}, headers=w.h
    )
    with Session(w.cfg.engine) as s, s.begin():
        past = datetime.now(UTC) - timedelta(seconds=1)
        s.execute(update(WebSession).where(WebSession.id == w.session.id).values(as_until=past))
    assert (await w.c.get("/api/v1/me")).json()["id"] == w.admin.user_id


async def test_refused_as_oneself_over_an_hour_from_a_token_or_by_a_user(w: World) -> None:
    r = await w.c.post("/api/v1/impersonation", json={"user_id": w.admin.user_id}, headers=w.h)
    assert r.status_code == 422
    r = await w.c.post(
        "/api/v1/impersonation", json={"user_id": w.bob.user_id, "minutes": 61}, headers=w.h
    )
    assert r.status_code == 422
    _, token = apitokens.mint(w.cfg.engine, w.admin, "t", "write", None)
    r = await w.c.post(
        "/api/v1/impersonation",
        json={"user_id": w.bob.user_id},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 403
    bobs = websessions.open_session(w.cfg.engine, w.bob, w.cfg.lifetimes)
    w.c.cookies.set("gig_session", bobs.token)
    r = await w.c.post(
        "/api/v1/impersonation",
        json={"user_id": w.admin.user_id},
        headers={"Origin": ORIGIN, "X-CSRF-Token": bobs.csrf},
    )
    assert r.status_code == 403


async def test_impersonation_is_off_unless_enabled(tmp_path: Path, database_url: str) -> None:
    async for w in world_of(tmp_path, database_url, enabled=False):
        r = await w.c.post("/api/v1/impersonation", json={"user_id": w.bob.user_id}, headers=w.h)
        assert r.status_code == 404
