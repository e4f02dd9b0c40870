"""The REST routes of connected accounts: ``/api/v1/oauth-apps`` (shared to read,
administrators to change) and ``/api/v1/connections`` (the caller's own), on both
databases. The code flow itself, against a real vendor, is tests/control/
test_connected_accounts.py; here: who may do what over HTTP, what comes out (never a
secret), and that connecting wants a browser session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.support.api_world import World, api_world

SECRET = "client-secret-of-acme-5b1e"
# Typed by the administrator on loopback: trusted as typed, never dialled here.
APP = {
    "vendor": "acme",
    "client_id": "gw-acme",
    "client_secret": SECRET,
    "authorization_endpoint": "http://127.0.0.1:9/authorize",
    "token_endpoint": "http://127.0.0.1:9/token",
    "default_scopes": ["offline_access", "read"],
    "resource": "https://api.acme.test/",
}


@pytest.fixture
async def w(tmp_path: Path, database_url: str) -> AsyncIterator[World]:
    async with api_world(database_url, tmp_path) as world:
        yield world


async def test_an_administrator_adds_an_app_and_nobody_ever_reads_its_secret(w: World) -> None:
    r = await w.c.post("/api/v1/oauth-apps", json=APP, headers=w.admin)
    assert r.status_code == 201, r.text
    assert r.json()["has_secret"] is True
    for who in (w.admin, w.alice):
        listed = await w.c.get("/api/v1/oauth-apps", headers=who)
        assert listed.status_code == 200 and listed.json()[0]["vendor"] == "acme"
        assert SECRET not in listed.text
    assert SECRET not in r.text
    with w.cfg.engine.connect() as c:
        rows = [str(x) for t in ("oauth_apps", "oauth_secrets", "audit_events")
                for x in c.execute(text(f"SELECT * FROM {t}"))]  # fmt: skip
    assert not [x for x in rows if SECRET in x]


async def test_only_administrators_change_apps(w: World) -> None:
    assert (await w.c.post("/api/v1/oauth-apps", json=APP, headers=w.alice)).status_code == 403
    assert (await w.c.post("/api/v1/oauth-apps", json=APP, headers=w.admin)).status_code == 201
    put = await w.c.put("/api/v1/oauth-apps/acme", json=APP, headers=w.bob)
    assert put.status_code == 403
    assert (await w.c.delete("/api/v1/oauth-apps/acme", headers=w.bob)).status_code == 403
    assert (await w.c.delete("/api/v1/oauth-apps/acme", headers=w.admin)).status_code == 204
    assert (await w.c.get("/api/v1/oauth-apps", headers=w.admin)).json() == []


async def test_a_second_app_for_a_vendor_and_a_bad_one_are_refused_plainly(w: World) -> None:
    assert (await w.c.post("/api/v1/oauth-apps", json=APP, headers=w.admin)).status_code == 201
    again = await w.c.post("/api/v1/oauth-apps", json=APP, headers=w.admin)
    assert again.status_code == 409 and "exists already" in again.json()["detail"]
    bad = {**APP, "vendor": "other", "token_endpoint": "http://tokens.acme.test/token"}
    r = await w.c.post("/api/v1/oauth-apps", json=bad, headers=w.admin)
    assert r.status_code == 422 and "plain http" in r.json()["detail"]
    assert SECRET not in r.text
    mismatch = await w.c.put(
        "/api/v1/oauth-apps/acme", json={**APP, "vendor": "x"}, headers=w.admin
    )
    assert mismatch.status_code == 422


async def test_connections_are_the_callers_own_and_connecting_needs_a_browser(w: World) -> None:
    await w.c.post("/api/v1/oauth-apps", json=APP, headers=w.admin)
    r = await w.c.get("/api/v1/connections", headers=w.alice)
    assert r.status_code == 200
    (only,) = r.json()
    assert only["vendor"] == "acme" and only["status"] == "not-connected"
    assert only["wanted_scopes"] == ["offline_access", "read"]
    start = await w.c.post("/api/v1/connections/acme", headers=w.alice)
    assert start.status_code == 422 and "browser" in start.json()["detail"]
    # Nothing to disconnect for bob, whatever alice has.
    assert (await w.c.delete("/api/v1/connections/acme", headers=w.bob)).status_code == 404
    assert (await w.c.post("/api/v1/connections/nope", headers=w.alice)).status_code == 422
