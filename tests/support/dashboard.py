"""The dashboard in-process for the tests: the real control plane (API and pages behind
the same guards) over a real migrated store, three users (an administrator, Alice and
Bob, signed in through the service layer as an identity provider's callback would),
and browsers as httpx clients carrying each one's session cookies.

Owns building that world; the tests of the pages use it, and the real-browser tests
(tests/web_browser) serve the same app over loopback. It must never stand in for the
service layer (every row is made through control/).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
from sqlalchemy import Engine

from gigmcp.api.context import ApiConfig
from gigmcp.api.ratelimit import Rate
from gigmcp.control import users, websessions
from gigmcp.control.actor import Actor
from gigmcp.control.users import Identity, RolePolicy
from gigmcp.store.db import make_engine, migrate
from gigmcp.vault.keys import Keyring, MasterKey
from gigmcp.web.app import build_control_plane

ORIGIN = "http://127.0.0.1:8080"
ISSUER = "https://idp.test"
POLICY = RolePolicy(admin_subjects=frozenset({"root"}))
PLENTY = Rate(per_second=1e6, burst=1e6)
# What every dashboard answer must say (web/security.py), checked by assert_safe_headers.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@dataclass
class Browser:
    """One signed-in browser: its client (cookies set) and the CSRF token its pages carry."""

    client: httpx.AsyncClient
    actor: Actor
    csrf: str

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.client.get(path, **kw)

    async def post_form(
        self, path: str, fields: dict[str, str], origin: str | None = ORIGIN, csrf: bool = True
    ) -> httpx.Response:
        """Post a form as the dashboard's own page would (its Origin, its CSRF field)."""
        data = dict(fields, csrf=self.csrf) if csrf else dict(fields)
        headers = {"Origin": origin} if origin else {}
        return await self.client.post(path, data=data, headers=headers)


@dataclass
class Dash:
    engine: Engine
    cfg: ApiConfig
    app: Any
    admin: Actor
    alice: Actor
    bob: Actor
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    def client(self) -> httpx.AsyncClient:
        c = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url=ORIGIN, follow_redirects=False
        )
        self.clients.append(c)
        return c

    def browser(self, who: Actor) -> Browser:
        """A browser signed in as ``who``: a real session row, its cookies set."""
        session = websessions.open_session(self.engine, who, self.cfg.lifetimes, "test")
        c = self.client()
        c.cookies.set(self.cfg.cookie_name, session.token)
        c.cookies.set(self.cfg.csrf_cookie_name, session.csrf)
        return Browser(c, who, session.csrf)


def config(engine: Engine, tmp: Path, **overrides: Any) -> ApiConfig:
    settings: dict[str, Any] = {
        "keyring": Keyring(MasterKey(bytes(range(32)))),
        "logs_dir": tmp / "logs",
        "user_rate": PLENTY,
        "address_rate": PLENTY,
        **overrides,
    }
    return ApiConfig(engine, ORIGIN, False, **settings)


@asynccontextmanager
async def dashboard(database_url: str, tmp: Path, **overrides: Any) -> AsyncIterator[Dash]:
    engine = make_engine(database_url)
    migrate(engine)
    cfg = config(engine, tmp, **overrides)
    people = [
        users.sign_in(engine, Identity(ISSUER, sub, email=f"{sub}@example.test", name=name), POLICY)
        for sub, name in (("root", "Rita Root"), ("alice", "Alice"), ("bob", "Bob"))
    ]
    dash = Dash(engine, cfg, build_control_plane(cfg), *people)
    try:
        yield dash
    finally:
        for c in dash.clients:
            await c.aclose()
        engine.dispose()


def assert_safe_headers(headers: dict[str, str] | object) -> None:
    h = {k.lower(): v for k, v in headers.items()}  # type: ignore[attr-defined]
    assert h["content-security-policy"] == CSP
    assert "unsafe" not in h["content-security-policy"]
    assert h["x-frame-options"] == "DENY"
    assert h["x-content-type-options"] == "nosniff"
    assert h["referrer-policy"] == "same-origin"
    assert h["cache-control"] == "no-store"
