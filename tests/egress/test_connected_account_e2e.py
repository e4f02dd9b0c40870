"""A connected account end to end, every part real: a catalog-style toolspec server with
an ``oauth2`` credential, jailed by the gateway, calls a resource server through the
egress proxy, which puts the user's current access token into the request; the token
comes from the user's connection to a vendor, made through the dashboard's Connect
button and the vendor's own login and consent forms.

The vendor is oidc-provider (tests/peers/oidc) with RFC 8707 resource indicators (JWT
access tokens whose audience is the API), refresh-token rotation and access tokens of
24 seconds, started inside the egress lab's namespace with the gateway; the API is the
lab's ``/protected`` route on api.example.test, which checks each token's signature
against the vendor's keys and its audience, and refuses anything else.

In order, on one connection: the first call carries the token the code exchange gave;
once the token is within a minute of expiry the next call carries a refreshed one (the
refresh named the resource again, or the API would refuse it) without the instance
being started again; two calls at once at the next expiry cause one refresh; a refresh
token the user revoked at the vendor makes the next call fail with a clear error naming
the vendor and where to reconnect, at once and without asking the vendor again. The
tokens are searched for where they must not be: the tool results, the jail, the
gateway's output and instance logs, the database file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from gigmcp.control import actor, install_rows
from gigmcp.core.definitions import parse_credentials, parse_egress
from gigmcp.installer import toolspec
from gigmcp.installer.runnable import Runnable
from gigmcp.store import oauth as oauth_store
from gigmcp.store.db import make_engine
from gigmcp.vault.keys import Keyring, MasterKey
from tests.support.egress_lab import Lab, lab
from tests.support.gateway import GatewayProc, free_port, gateway
from tests.support.mcp_client import connect, text_of
from tests.support.oidc import (
    Account,
    Client,
    OidcProvider,
    browser_login,
    missing,
    start_provider,
)

pytestmark = [pytest.mark.root, pytest.mark.skipif(missing() is not None, reason=str(missing()))]

HOST = "api.example.test"
RESOURCE = f"https://{HOST}/"
TTL = 24  # the broker refreshes halfway through so short a life: 12 s after each refresh
ALICE = Account("alice", "alice-pw")
SPEC: dict[str, Any] = {
    "schemaVersion": 1,
    "name": "acme",
    "version": "0.1.0",
    "baseUrl": f"https://{HOST}",
    "tools": [
        {"name": "whoami", "description": "Ask the API", "method": "GET",
         "path": "/protected", "params": []},
    ],
}  # fmt: skip
CREDENTIAL = {
    "id": "acme_token",
    "type": "oauth2",
    "provider": "acme",
    "vendor": "acme",
    "scopes": ["api:read"],
    "inject": {"header": "Authorization", "format": "Bearer {token}"},
}
MANIFEST = {
    "schemaVersion": 1, "name": "acme", "version": "0.1.0", "tier": "sealed",
    "entitlements": {"egress": [HOST]}, "credentials": [CREDENTIAL],
    "tools": [{"name": "whoami", "default": True}],
}  # fmt: skip


class World:
    def __init__(self, the_lab: Lab, g: GatewayProc, vendor: OidcProvider) -> None:
        self.lab, self.g, self.vendor = the_lab, g, vendor
        self.tokens: set[str] = set()  # every access token the API accepted

    def refreshes(self) -> int:
        return self.vendor.log().count("token issued to gw-acme (refresh_token)")

    def state(self) -> oauth_store.ConnectionState:
        engine = make_engine(f"sqlite:///{self.g.data_dir / 'gigmcp.db'}")
        try:
            st = oauth_store.load_state(
                engine, Keyring(MasterKey(bytes.fromhex("ab" * 32))), 1, "acme"
            )
        finally:
            engine.dispose()
        assert st is not None
        return st


def _checker(vendor: OidcProvider, seen: set[str]) -> Any:
    keys = KeySet.import_key_set(vendor.jwks())  # type: ignore[arg-type]

    def check(token: str) -> str | None:
        try:
            claims = jwt.decode(token, keys).claims
        except Exception as exc:  # any failure to verify is the API's 401
            return f"not a token of the vendor ({type(exc).__name__})"
        if claims.get("aud") != RESOURCE:
            return f"audience {claims.get('aud')!r} is not this API"
        if claims.get("exp", 0) < time.time():
            return "expired"
        seen.add(token)
        return None

    return check


def _install(g: GatewayProc, packages: Path) -> None:
    g.cli("server", "list")  # creates and migrates the database
    engine = make_engine(f"sqlite:///{g.data_dir / 'gigmcp.db'}")
    try:
        creds = parse_credentials([CREDENTIAL], parse_egress({"hosts": [HOST]}))
        command, cwd = toolspec.lay_out(packages / "acme", SPEC, creds)
        origin = {
            "kind": "toolspec", "name": "acme", "version": "0.1.0", "manifest": MANIFEST,
            "runtime_hash": "0" * 64, "path": str(packages / "acme"),
        }  # fmt: skip
        run = Runnable(command, cwd, {}, {"hosts": [HOST]}, [CREDENTIAL], origin)
        install_rows.install(engine, actor.local_admin(engine), "acme", run)
    finally:
        engine.dispose()


def _sign_in(g: GatewayProc, browser: httpx.Client) -> dict[str, str]:
    link = g.cli("login-link").stdout.strip().split()[-1]
    r = browser.get(link, follow_redirects=False)
    assert r.status_code == 303, r.text
    csrf = browser.cookies["gig_csrf"]
    return {"X-CSRF-Token": csrf, "Origin": g.base}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("account")
    # Not under pytest's tmp dir: the jail's user must be able to reach the package.
    packages = Path(tempfile.mkdtemp(prefix="gigpkg-"))
    packages.chmod(0o755)
    with contextlib.ExitStack() as cleanup, lab() as the_lab:
        cleanup.callback(shutil.rmtree, packages, True)
        port = free_port()
        callback = f"http://127.0.0.1:{port}/connections/acme/callback"
        with start_provider(
            tmp, clients=[Client("gw-acme", [callback], client_secret="acme-secret-e2e")],
            accounts=[ALICE], resources={RESOURCE: {"scope": "api:read", "ttl": TTL}},
            rotate_refresh_tokens=True,
        ) as vendor:  # fmt: skip
            ca = tmp / "upstream-ca.pem"
            ca.write_bytes(the_lab.ca_pem)
            with gateway(
                tmp, jailed=True, GIG_SANDBOX_SUBNET="10.214.0.0/24", GIG_SANDBOX_POOL="0",
                GIG_EGRESS_DNS=the_lab.dns, GIG_EGRESS_CA_BUNDLE=str(ca),
            ) as g:  # fmt: skip
                _install(g, packages)
                g.profile("work", "acme")
                g.start(port=port)
                w = World(the_lab, g, vendor)
                the_lab.token_check = _checker(vendor, w.tokens)
                yield w


def _connect(w: World) -> None:
    """Alice (the local administrator here) sets up the app and connects, in a browser."""
    with httpx.Client(base_url=w.g.base) as browser:
        headers = _sign_in(w.g, browser)
        app = {
            "vendor": "acme", "client_id": "gw-acme", "client_secret": "acme-secret-e2e",
            "issuer": w.vendor.issuer, "resource": RESOURCE,
            "default_scopes": ["openid", "offline_access"], "extra_params": {"prompt": "consent"},
            "api_hosts": [HOST],
        }  # fmt: skip
        r = browser.post("/api/v1/oauth-apps", json=app, headers=headers)
        assert r.status_code == 201, r.text
        r = browser.post(
            "/connections/acme/connect",
            data={"csrf": headers["X-CSRF-Token"]},
            headers={"Origin": w.g.base},
            follow_redirects=False,
        )
        assert r.status_code == 303, r.text
        # The page that posted lets its form continue at the vendor.
        back = browser_login(browser, r.headers["location"], ALICE.sub, ALICE.password)
        done = browser.get(back, follow_redirects=False)
        assert done.status_code == 303 and done.headers["location"] == "/connections?done=connected"
        listed = browser.get("/api/v1/connections").json()
        assert listed[0]["status"] == "connected" and "api:read" in listed[0]["granted_scopes"]


async def _whoami(w: World) -> tuple[bool, str]:
    async with connect(w.g, "work", "auto") as c:
        result = await c.call_tool("acme_whoami", {})
    return bool(result.is_error), text_of(result) + json.dumps(result.structured_content or {})


def _wait_due(w: World) -> None:
    """Until the broker refreshes the stored token: a minute before it expires, or
    halfway through its life if that is shorter (here: 12 s after it was issued)."""
    st = w.state()
    assert st.expires_at is not None and st.refreshed_at is not None
    life = st.expires_at.timestamp() - st.refreshed_at.timestamp()
    due = st.expires_at.timestamp() - min(60.0, life / 2)
    time.sleep(max(0.0, due - time.time()) + 0.5)


def _placeholder(text: str) -> str:
    """The placeholder the API's echo of the Authorization header came back as."""
    found = set(re.findall(r"Bearer (gigmcp_ph_[0-9A-Za-z]+)", text))
    assert len(found) == 1, text
    return found.pop()


def _clean(w: World, text: str) -> None:
    for token in w.tokens:
        assert token not in text


async def test_the_connected_account_reaches_the_api_refreshes_and_fails_clearly(
    world: World,
) -> None:
    w = world
    _connect(w)
    first = w.state().access
    assert first is not None

    # 1. The token of the code exchange, injected by the proxy; the API's echo of it
    #    comes back scrubbed to the placeholder.
    error, text = await _whoami(w)
    assert not error, text
    assert w.tokens == {first.decode()}
    placeholder = _placeholder(text)
    _clean(w, text)

    # 2. Due: the next call carries a refreshed token (for the API's audience: the
    #    refresh named the resource), without a relaunch.
    before = w.refreshes()
    _wait_due(w)
    error, text = await _whoami(w)
    assert not error, text
    assert w.refreshes() == before + 1
    assert len(w.tokens) == 2
    second = w.state()
    assert second.access is not None and second.access.decode() in w.tokens
    assert second.access != first
    _clean(w, text)
    # The same placeholder: the same launch (each launch mints a new one).
    assert _placeholder(text) == placeholder

    # 3. Two calls at once at the next expiry: one refresh.
    _wait_due(w)
    before = w.refreshes()
    results = await asyncio.gather(_whoami(w), _whoami(w))
    assert [e for e, _t in results] == [False, False], results
    assert w.refreshes() == before + 1
    assert len(w.tokens) == 3
    assert {_placeholder(t) for _e, t in results} == {placeholder}

    # 4. The user revokes the gateway's access at the vendor: the next call fails with
    #    the vendor's name and where to reconnect, at once; the one after it too,
    #    without asking the vendor again.
    st = w.state()
    assert st.refresh is not None
    r = httpx.post(
        w.vendor.discovery["revocation_endpoint"],
        data={"token": st.refresh.decode(), "token_type_hint": "refresh_token"},
        auth=("gw-acme", "acme-secret-e2e"),
    )
    assert r.status_code == 200
    _wait_due(w)
    asked = w.vendor.log().count("grant.error") + w.refreshes()
    started = time.monotonic()
    error, text = await _whoami(w)
    assert error
    assert "acme" in text and f"{w.g.base}/connections" in text and "reconnect" in text
    assert time.monotonic() - started < 15  # never a hang
    error, text = await _whoami(w)
    assert error and "must be connected again" in text
    assert w.vendor.log().count("grant.error") + w.refreshes() == asked + 1

    # 5. The tokens are nowhere they must not be.
    output = w.g.output() + w.g.server_logs("acme", "work")
    _clean(w, output)
    database = (w.g.data_dir / "gigmcp.db").read_bytes()
    for suffix in ("-wal", "-shm"):
        extra = w.g.data_dir / f"gigmcp.db{suffix}"
        if extra.exists():
            database += extra.read_bytes()
    for token in w.tokens:
        assert token.encode() not in database
