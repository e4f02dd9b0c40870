"""The API's guards that hold before any route runs, in-process over the real API app
and a real store: a body is never read past the limit, declared or chunked, and the
caller does not need to be signed in for the limit to apply."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx2 as httpx

from gigmcp.api.app import build_api
from gigmcp.api.context import ApiConfig
from gigmcp.store.db import make_engine, migrate

LIMIT = 64 * 1024


def api(tmp_path: Path) -> httpx.AsyncClient:
    engine = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    migrate(engine)
    cfg = ApiConfig(engine, "http://127.0.0.1:1", False, max_body_bytes=LIMIT)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=build_api(cfg)), base_url="http://t")


async def test_attack_a_chunked_body_is_cut_off_at_the_limit_before_sign_in(tmp_path: Path) -> None:
    pulled = 0

    async def flood() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(1000):  # 64 MiB on offer
            pulled += 1
            yield b"x" * LIMIT

    async with api(tmp_path) as c:
        r = await c.post(
            "/api/v1/profiles", content=flood(), headers={"Content-Type": "application/json"}
        )
    assert r.status_code == 413 and r.json()["code"] == "too-large"
    assert pulled <= 3, f"{pulled} chunks read past a {LIMIT}-byte limit"


async def test_a_declared_oversized_body_is_refused_unread(tmp_path: Path) -> None:
    async with api(tmp_path) as c:
        r = await c.post("/api/v1/profiles", content=b"x" * (LIMIT + 1))
    assert r.status_code == 413


async def test_a_body_within_the_limit_reaches_the_route(tmp_path: Path) -> None:
    async with api(tmp_path) as c:
        r = await c.post("/api/v1/profiles", json={"slug": "fine"})
    assert r.status_code == 401  # the route ran: it wants a signed-in caller


async def test_the_local_administrators_session_ends_with_the_embedded_default(
    tmp_path: Path,
) -> None:
    """Signed in with a link, then the gateway is given an identity provider (or this
    is a replica where links are off): the old session opens nothing."""
    from gigmcp.control import actor, websessions

    engine = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    migrate(engine)
    session = websessions.open_session(engine, actor.local_admin(engine), websessions.Lifetimes())
    for links, status in ((True, 200), (False, 401)):
        cfg = ApiConfig(engine, "http://127.0.0.1:1", False, login_links=links)
        transport = httpx.ASGITransport(app=build_api(cfg))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            c.cookies.set("gig_session", session.token)
            assert (await c.get("/api/v1/me")).status_code == status
