"""IDOR, route by route: every route of the OpenAPI document that names an object is
called by another (non-admin) user with Alice's object in the path, and answers 404,
the same as for an object that does not exist (403 only where the route itself is for
administrators). Every route is in the table below or in NOT_PER_OBJECT with a reason,
so a new route cannot be added without deciding its case here. In-process, over the
real API app and a real store (SQLite and PostgreSQL) and vault key."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2 as httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from gigmcp.api.app import build_api
from gigmcp.api.context import ApiConfig
from gigmcp.control import apitokens, credentials, profiles, servers, tokens, users, websessions
from gigmcp.control.users import Identity, RolePolicy
from gigmcp.installer.materialize import Target
from gigmcp.store.db import make_engine, migrate
from gigmcp.store.models import ApiToken, ProfileToken, ToolPin
from gigmcp.vault.keys import Keyring, MasterKey

ROOT = Path(__file__).resolve().parents[2]
RING = Keyring(MasterKey(bytes(range(32))))
API_KEY = {
    "id": "api_key",
    "type": "api_key",
    "provider": "example",
    "inject": {"header": "Authorization", "format": "Bearer {token}"},
}
# (method, path template, body, expected status for Bob)
PER_OBJECT = [
    ("GET", "/api/v1/profiles/{slug}", None, 404),
    ("PATCH", "/api/v1/profiles/{slug}", {"slug": "taken-over"}, 404),
    ("DELETE", "/api/v1/profiles/{slug}", None, 404),
    ("PUT", "/api/v1/profiles/{slug}/servers/{server}", {}, 404),
    ("DELETE", "/api/v1/profiles/{slug}/servers/{server}", None, 404),
    ("PUT", "/api/v1/profiles/{slug}/servers/{server}/tools/{tool}", {"enabled": False}, 404),
    ("POST", "/api/v1/profiles/{slug}/tokens", {}, 404),
    ("DELETE", "/api/v1/profile-tokens/{token_id}", None, 404),
    ("DELETE", "/api/v1/api-tokens/{api_token_id}", None, 404),
    ("DELETE", "/api/v1/sessions/{session_id}", None, 404),
    ("PUT", "/api/v1/servers/{name}/credentials/{credential_id}", {"value": "x" * 8}, 404),
    ("DELETE", "/api/v1/servers/{name}/credentials/{credential_id}", None, 404),
    ("GET", "/api/v1/servers/{name}/logs?profile={slug}", None, 404),
    ("GET", "/api/v1/servers/{name}/pins", None, 404),
    ("POST", "/api/v1/servers/{name}/pins/{tool}/approve", None, 404),
    ("DELETE", "/api/v1/installs/{server}", None, 403),
    ("GET", "/api/v1/catalog/{ref}/consent", None, 403),
]
NOT_PER_OBJECT = {
    "/api/auth/callback": "sign-in: no object of a user",
    "/api/auth/link": "sign-in: no object of a user",
    "/api/auth/login": "sign-in: no object of a user",
    "/api/auth/logout": "acts on the caller's own session",
    "/api/v1/api-tokens": "lists and mints the caller's own (tests/api/test_embedded_default.py)",
    "/api/v1/audit": "the caller's own rows; another's profile as a filter is 404 (test_routes)",
    "/api/v1/catalog": "the shared index",
    "/api/v1/catalog/{ref}": "the shared index",
    "/api/v1/connections": "the caller's own (tests/api/test_connections.py)",
    "/api/v1/connections/{vendor}": "the caller's own connection to a shared app "
    "(tests/api/test_connections.py)",
    "/api/v1/oauth-apps": "shared; changes by administrators only (tests/api/test_connections.py)",
    "/api/v1/oauth-apps/{vendor}": "administrators only (tests/api/test_connections.py)",
    "/api/v1/credentials": "the caller's own status (test_routes)",
    "/api/v1/impersonation": "administrators only (tests/api/test_impersonation.py)",
    "/api/v1/installs": "administrators only (tests/api/test_catalog.py)",
    "/api/v1/me": "the caller",
    "/api/v1/overview": "the caller's own rows (tests/control/test_overview.py)",
    "/api/v1/profile-tokens": "the caller's own (checked below)",
    "/api/v1/remote-servers": "makes a server of the caller's own "
    "(tests/egress/test_remote_server_e2e.py)",
    "/api/v1/profiles": "the caller's own (checked below)",
    "/api/v1/servers": "the catalog and the caller's own (test_routes)",
    "/api/v1/sessions": "the caller's own (checked below)",
    "/api/v1/users": "administrators only (checked below)",
}


@pytest.fixture
async def world(
    tmp_path: Path,
    database_url: str,
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str], dict[str, str]]]:
    engine = make_engine(database_url)
    migrate(engine)
    cfg = ApiConfig(
        engine, "http://127.0.0.1:1", False, keyring=RING, logs_dir=tmp_path / "logs",
        install_target=Target(tmp_path / "packages"),
    )  # fmt: skip
    policy = RolePolicy()
    alice = users.sign_in(engine, Identity("https://idp.test", "alice"), policy)
    bob = users.sign_in(engine, Identity("https://idp.test", "bob"), policy)
    hosts = {"hosts": ["api.example.test"]}
    servers.add_server(
        engine, alice, "alices", ["/bin/true"], {}, [], None, egress=hosts, credentials=[API_KEY]
    )
    profiles.create_profile(engine, alice, "alice-p")
    profiles.assign(engine, alice, "alice-p", "alices", True)
    credentials.set_credential(engine, RING, alice, "alices", "api_key", b"alice-value")
    tokens.mint_token(engine, alice, "alice-p", "laptop", None)
    apitokens.mint(engine, alice, "script", "write", None)
    session = websessions.open_session(engine, alice, cfg.lifetimes)
    with Session(engine) as s, s.begin():
        server_id = s.scalar(select(ProfileToken.id))
        del server_id
        s.add(
            ToolPin(
                server_id=1,
                tool="t",
                fingerprint="f" * 64,
                snapshot={},
                flagged_fingerprint="g" * 64,
                flagged_snapshot={},
            )
        )
    with Session(engine) as s:
        ids = {
            "slug": "alice-p",
            "server": "alices",
            "name": "alices",
            "tool": "t",
            "credential_id": "api_key",
            "ref": "alices",
            "token_id": str(s.scalar(select(ProfileToken.id))),
            "api_token_id": str(
                s.scalar(select(ApiToken.id).where(ApiToken.user_id == alice.user_id))
            ),
            "session_id": str(session.id),
        }
    _, bob_token = apitokens.mint(engine, bob, "bob", "write", None)
    transport = httpx.ASGITransport(app=build_api(cfg))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c, {"Authorization": f"Bearer {bob_token}"}, ids


def test_every_route_is_decided_here() -> None:
    document = json.loads((ROOT / "docs" / "openapi.json").read_text())
    listed = {
        path.split("?")[0].replace("{api_token_id}", "{token_id}") for _, path, _, _ in PER_OBJECT
    }
    for path in document["paths"]:
        assert path in listed or path in NOT_PER_OBJECT, (
            f"{path}: add it to PER_OBJECT or NOT_PER_OBJECT"
        )


async def test_attack_another_user_reaches_none_of_alices_objects(world) -> None:  # type: ignore[no-untyped-def]
    c, bob, ids = world
    for method, template, body, expected in PER_OBJECT:
        url = template.format(**ids)
        r = await c.request(method, url, json=body, headers=bob)
        assert r.status_code == expected, (method, url, r.status_code, r.text)
        assert "alice-value" not in r.text
    # The lists show Bob nothing of Alice's.
    assert (await c.get("/api/v1/profiles", headers=bob)).json() == []
    assert (await c.get("/api/v1/profile-tokens", headers=bob)).json() == []
    assert [t["name"] for t in (await c.get("/api/v1/api-tokens", headers=bob)).json()] == ["bob"]
    assert (await c.get("/api/v1/sessions", headers=bob)).json() == []
    assert (await c.get("/api/v1/users", headers=bob)).status_code == 403


async def test_a_missing_object_answers_exactly_as_alices_does(world) -> None:  # type: ignore[no-untyped-def]
    c, bob, ids = world
    missing = {
        k: ("nobody-p" if k == "slug" else "nobody" if not v.isdigit() else "999999")
        for k, v in ids.items()
    }
    for method, template, body, _ in PER_OBJECT:
        a = await c.request(method, template.format(**ids), json=body, headers=bob)
        b = await c.request(method, template.format(**missing), json=body, headers=bob)
        assert a.status_code == b.status_code, (method, template)
        assert a.json()["code"] == b.json()["code"]
