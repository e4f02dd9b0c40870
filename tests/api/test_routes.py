"""The REST API's resource routes in-process over the real API app, a real store (SQLite
and PostgreSQL) and a real vault key: credentials go in and never come out, every user's
objects are theirs alone (404 for anyone else's, by name or id), the catalog is shared,
and audit pages are keyset-paged with an opaque cursor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from gigmcp.control import profiles, servers
from gigmcp.store.models import AuditRow, CredentialValue
from tests.support.api_world import World, api_world

SECRET = "sk_live_gigAPI_9f8e7d6c5b4a3210"
API_KEY = {
    "id": "api_key",
    "type": "api_key",
    "provider": "example",
    "inject": {"header": "Authorization", "format": "Bearer {token}"},
}


@pytest.fixture
async def w(tmp_path: Path, database_url: str) -> AsyncIterator[World]:
    async with api_world(database_url, tmp_path) as world:
        engine, admin, alice = world.cfg.engine, world.people["root"], world.people["alice"]
        hosts = {"hosts": ["api.example.test"]}
        for owner, name in ((admin, "catalog"), (alice, "alices")):
            servers.add_server(
                engine, owner, name, ["/bin/true"], {}, [], None, egress=hosts,
                credentials=[API_KEY],
            )  # fmt: skip
        profiles.create_profile(engine, alice, "alice-p")
        yield world


async def test_a_credential_goes_in_and_never_comes_out(w: World) -> None:
    r = await w.c.put(
        "/api/v1/servers/catalog/credentials/api_key", json={"value": SECRET}, headers=w.alice
    )
    assert r.status_code == 204
    listed = await w.c.get("/api/v1/credentials", headers=w.alice)
    assert {
        "server": "catalog",
        "credential_id": "api_key",
        "kind": "sealed",
        "is_set": True,
    } in listed.json()
    assert SECRET not in listed.text
    with Session(w.cfg.engine) as s:
        stored = b"".join(r.ciphertext for r in s.scalars(select(CredentialValue)))
        audit = repr([(r.action, r.detail) for r in s.scalars(select(AuditRow))])
    assert SECRET.encode() not in stored and SECRET not in audit
    # Bob uses the same catalog server with a value of his own, unset so far.
    bobs = (await w.c.get("/api/v1/credentials", headers=w.bob)).json()
    assert {
        "server": "catalog",
        "credential_id": "api_key",
        "kind": "sealed",
        "is_set": False,
    } in bobs


async def test_a_bad_credential_value_is_refused_without_being_echoed(w: World) -> None:
    for value in (SECRET + "\n" + SECRET, ""):
        r = await w.c.put(
            "/api/v1/servers/catalog/credentials/api_key", json={"value": value}, headers=w.alice
        )
        assert r.status_code == 422, r.text
        assert SECRET not in r.text


async def test_attack_another_users_private_server_and_profile_are_not_found(w: World) -> None:
    h = w.bob
    attempts = [
        ("PUT", "/api/v1/servers/alices/credentials/api_key", {"value": "x" * 10}),
        ("DELETE", "/api/v1/servers/alices/credentials/api_key", None),
        ("GET", "/api/v1/servers/alices/pins", None),
        ("GET", "/api/v1/servers/alices/logs?profile=alice-p", None),
        ("GET", "/api/v1/profiles/alice-p", None),
        ("PUT", "/api/v1/profiles/alice-p/servers/catalog", {}),
    ]
    for method, url, body in attempts:
        r = await w.c.request(method, url, json=body, headers=h)
        assert r.status_code == 404, (method, url, r.status_code, r.text)
    names = [s["name"] for s in (await w.c.get("/api/v1/servers", headers=h)).json()]
    assert names == ["catalog"]
    assert "alices" in [
        s["name"] for s in (await w.c.get("/api/v1/servers", headers=w.admin)).json()
    ]


async def test_a_user_puts_a_catalog_server_in_their_profile(w: World) -> None:
    assert (
        await w.c.post("/api/v1/profiles", json={"slug": "bob-p"}, headers=w.bob)
    ).status_code == 201
    r = await w.c.put("/api/v1/profiles/bob-p/servers/catalog", json={}, headers=w.bob)
    assert r.status_code == 204, r.text
    detail = (await w.c.get("/api/v1/profiles/bob-p", headers=w.bob)).json()
    assert [a["server"] for a in detail["assignments"]] == ["catalog"]


async def test_audit_pages_follow_an_opaque_cursor_and_show_only_ones_own(w: World) -> None:
    for i in range(7):
        await w.c.post("/api/v1/profiles", json={"slug": f"page-{i}"}, headers=w.bob)
    seen: list[int] = []
    url = "/api/v1/audit?limit=3&action=profile.create"
    while url:
        page = (await w.c.get(url, headers=w.bob)).json()
        seen += [e["id"] for e in page["items"]]
        assert all(e["user_id"] == page["items"][0]["user_id"] for e in page["items"])
        url = (
            f"/api/v1/audit?limit=3&action=profile.create&after={page['next']}"
            if page["next"]
            else ""
        )
    assert len(seen) == 7 and seen == sorted(seen, reverse=True)
    bad = await w.c.get("/api/v1/audit?after=not-a-cursor", headers=w.bob)
    assert bad.status_code == 422 and bad.json()["code"] == "invalid"
    too_big = await w.c.get("/api/v1/audit?limit=100000", headers=w.bob)
    assert too_big.status_code == 422


@pytest.mark.parametrize(
    "query",
    [
        # A cursor whose id no database column holds (a driver error, once).
        "after=MjAyNi0xMi0wM1QwMDowMDowMCswMDowMHw5OTk5OTk5OTk5OTk5OTk5OTk5OTk5",
        "after=MjAyNi0xMi0wM1QwMDowMDowMCswMDowMHwtMQ",  # a negative id
        "server=a%00b",  # PostgreSQL refuses a NUL in text (a driver error, once)
        "action=x%00",
        "profile=%00",
    ],
)
async def test_attack_a_forged_cursor_or_a_nul_is_a_clear_422(w: World, query: str) -> None:
    r = await w.c.get(f"/api/v1/audit?{query}", headers=w.bob)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid" and "Traceback" not in r.text


async def test_audit_filters_and_a_profile_filter_only_for_ones_own(w: World) -> None:
    await w.c.post("/api/v1/profiles", json={"slug": "bob-f"}, headers=w.bob)
    await w.c.post("/api/v1/profiles/bob-f/tokens", json={}, headers=w.bob)
    page = (await w.c.get("/api/v1/audit?action=token.mint", headers=w.bob)).json()
    assert [e["action"] for e in page["items"]] == ["token.mint"]
    future = (await w.c.get("/api/v1/audit?since=2999-01-01T00:00:00Z", headers=w.bob)).json()
    assert future["items"] == []
    # Another user's profile as a filter: not found, as if it did not exist.
    r = await w.c.get("/api/v1/audit?profile=alice-p", headers=w.bob)
    assert r.status_code == 404
    # An administrator filters by user; a user's user_id filter changes nothing.
    mine = (await w.c.get("/api/v1/audit?user_id=1", headers=w.bob)).json()["items"]
    assert {e["user_id"] for e in mine} <= {e["user_id"] for e in page["items"]}


async def test_a_profile_is_renamed_and_its_old_name_is_gone(w: World) -> None:
    await w.c.post("/api/v1/profiles", json={"slug": "old-name"}, headers=w.bob)
    r = await w.c.patch("/api/v1/profiles/old-name", json={"slug": "new-name"}, headers=w.bob)
    assert r.status_code == 200 and r.json()["slug"] == "new-name"
    assert (await w.c.get("/api/v1/profiles/old-name", headers=w.bob)).status_code == 404
    taken = await w.c.patch("/api/v1/profiles/new-name", json={"slug": "alice-p"}, headers=w.bob)
    assert taken.status_code == 409
    theirs = await w.c.patch("/api/v1/profiles/alice-p", json={"slug": "stolen"}, headers=w.bob)
    assert theirs.status_code == 404


async def test_the_profile_list_is_keyset_paged(w: World) -> None:
    for i in range(5):
        await w.c.post("/api/v1/profiles", json={"slug": f"pg-{i}"}, headers=w.bob)
    first = (await w.c.get("/api/v1/profiles?limit=2", headers=w.bob)).json()
    rest = (
        await w.c.get(f"/api/v1/profiles?limit=10&after={first[-1]['slug']}", headers=w.bob)
    ).json()
    assert [p["slug"] for p in first + rest] == [f"pg-{i}" for i in range(5)]
    assert (await w.c.get("/api/v1/profiles?limit=0", headers=w.bob)).status_code == 422
