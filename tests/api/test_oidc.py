"""Signing in with a real OpenID provider (oidc-provider on Node 22, tests/peers/oidc)
through a real `gigmcp serve`: the whole authorization code flow with PKCE, driven over
HTTP as a browser drives it (the provider's own login and consent forms), then the
attacks on it, each a test that fails if its guard is removed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx2 as httpx
import pytest

from tests.support.gateway import TIME, GatewayProc, free_port, gateway
from tests.support.oidc import (
    ZITADEL_ROLES,
    Account,
    Client,
    OidcProvider,
    browser_login,
    missing,
    start_provider,
)

pytestmark = pytest.mark.skipif(missing() is not None, reason=missing() or "")

ACCOUNTS = [
    Account(
        "alice", "alice-pw", "alice@example.test", True, "Alice", roles={"gig-admin": {"1": "org"}}
    ),
    Account("bob", "bob-pw", "bob@example.test", True, "Bob"),
    Account("eve", "eve-pw", "boss@example.test", False, "Eve"),
]


@dataclass
class World:
    gw: GatewayProc
    idp: OidcProvider

    def browser(self) -> httpx.Client:
        return httpx.Client(base_url=self.gw.base, timeout=30, follow_redirects=False)

    def start(self, b: httpx.Client, return_to: str | None = None) -> str:
        """Begin a sign-in at the gateway; the provider URL it sends the browser to."""
        params = {"return_to": return_to} if return_to else None
        r = b.get("/api/auth/login", params=params)
        assert r.status_code == 303, r.text
        location = r.headers["location"]
        assert location.startswith(self.idp.issuer)
        return location

    def sign_in(self, b: httpx.Client, who: str, return_to: str | None = None) -> httpx.Response:
        callback = browser_login(b, self.start(b, return_to), who, f"{who}-pw")
        return b.get(callback)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("oidc")
    port = free_port()
    callback = f"http://127.0.0.1:{port}/api/auth/callback"
    client = Client("gigmcp", [callback], client_secret="s3cret%+/=")
    with start_provider(tmp, clients=[client], accounts=ACCOUNTS) as idp, gateway(tmp) as g:
        g.add_server("time", TIME)
        g.start(
            port=port,
            GIG_OIDC_ISSUER=idp.issuer,
            GIG_OIDC_CLIENT_ID="gigmcp",
            GIG_OIDC_CLIENT_SECRET="s3cret%+/=",
            GIG_OIDC_REDIRECT_URL=callback,
            GIG_OIDC_SCOPES="roles",
            GIG_OIDC_ROLES_CLAIM=ZITADEL_ROLES,
            GIG_OIDC_ADMIN_ROLE="gig-admin",
            GIG_ADMIN_EMAILS="boss@example.test",
        )
        yield World(g, idp)


def test_a_user_signs_in_with_the_provider_and_lands_where_they_were_going(world: World) -> None:
    with world.browser() as b:
        r = world.sign_in(b, "bob", return_to="/profiles?tab=mine")
        assert r.status_code == 303 and r.headers["location"] == "/profiles?tab=mine"
        me = b.get("/api/v1/me").json()
    assert (me["issuer"], me["subject"], me["email"], me["name"]) == (
        world.idp.issuer,
        "bob",
        "bob@example.test",
        "Bob",
    )
    assert me["role"] == "user"
    assert "control plane: sign in with" in world.gw.output()
    assert "gig_ll_" not in world.gw.output()  # no sign-in link beside a provider


def test_the_roles_claim_makes_an_administrator_and_an_unverified_email_does_not(
    world: World,
) -> None:
    with world.browser() as b:
        world.sign_in(b, "alice")
        assert b.get("/api/v1/me").json()["role"] == "admin"
    with world.browser() as b:  # Eve's email is on GIG_ADMIN_EMAILS, but not verified
        world.sign_in(b, "eve")
        assert b.get("/api/v1/me").json()["role"] == "user"


def test_attack_a_state_that_is_not_the_browsers_signs_no_one_in(world: World) -> None:
    with world.browser() as b:
        callback = browser_login(b, world.start(b), "bob", "bob-pw")
        parts = urlsplit(callback)
        query = dict(parse_qsl(parts.query))
        query["state"] = "forged-" + query["state"][7:]
        r = b.get(urlunsplit(parts._replace(query=urlencode(query))))
        assert r.status_code == 401 and r.json()["code"] == "unauthenticated"
        assert b.get("/api/v1/me").status_code == 401


def test_attack_a_callback_replayed_or_carried_to_another_browser_signs_no_one_in(
    world: World,
) -> None:
    with world.browser() as b:
        flow_cookie_url = world.start(b)
        sealed = b.cookies["gig_oidc_flow"]
        callback = browser_login(b, flow_cookie_url, "bob", "bob-pw")
        assert b.get(callback).status_code == 303  # once
        again = b.get(callback)  # the flow cookie was cleared: no sign-in in progress
        assert again.status_code == 401
    with world.browser() as thief:  # the flow cookie restored: the code is spent
        thief.cookies.set("gig_oidc_flow", sealed, domain="127.0.0.1", path="/api/auth")
        assert thief.get(callback).status_code == 401
        assert thief.get("/api/v1/me").status_code == 401
    with world.browser() as victim:  # login CSRF: someone else's callback link
        assert victim.get(callback).status_code == 401


def test_attack_a_tampered_flow_cookie_is_refused(world: World) -> None:
    with world.browser() as b:
        callback = browser_login(b, world.start(b), "bob", "bob-pw")
        sealed = b.cookies["gig_oidc_flow"]
        flipped = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
        b.cookies.set("gig_oidc_flow", flipped, domain="127.0.0.1", path="/api/auth")
        assert b.get(callback).status_code == 401


def test_attack_no_open_redirect_through_return_to(world: World) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:x"):
        with world.browser() as b:
            r = world.sign_in(b, "bob", return_to=target)
            assert r.status_code == 303 and r.headers["location"] == "/", target


def test_a_denied_consent_signs_no_one_in_and_shows_only_the_code(world: World) -> None:
    with world.browser() as b:
        callback = browser_login(b, world.start(b), "bob", "bob-pw", consent=False)
        r = b.get(callback)
        assert r.status_code == 401
        assert "(access_denied)" in r.json()["detail"]
        assert b.get("/api/v1/me").status_code == 401


def test_rotated_provider_keys_are_fetched_again(world: World) -> None:
    with world.browser() as b:
        world.sign_in(b, "bob")  # the gateway has cached the keys
    world.idp.rotate_keys(drop_old=True)
    with world.browser() as b:
        r = world.sign_in(b, "bob")
        assert r.status_code == 303, r.text
        assert b.get("/api/v1/me").status_code == 200


def test_attack_users_see_none_of_each_others_objects(world: World) -> None:
    """IDOR across two users signed in with the provider: 404, never 403."""
    with world.browser() as alice_b, world.browser() as bob_b:
        world.sign_in(bob_b, "bob")
        csrf = bob_b.cookies["gig_csrf"]
        h = {"Origin": world.gw.base, "X-CSRF-Token": csrf}
        assert bob_b.post("/api/v1/profiles", json={"slug": "bobs"}, headers=h).status_code == 201
        minted = bob_b.post("/api/v1/profiles/bobs/tokens", json={}, headers=h)
        assert minted.status_code == 201
        token_id = bob_b.get("/api/v1/profile-tokens").json()[0]["id"]
        api_id = bob_b.post(
            "/api/v1/api-tokens", json={"name": "x", "scope": "read"}, headers=h
        ).json()["id"]
        session_id = bob_b.get("/api/v1/sessions").json()[0]["id"]

        world.sign_in(alice_b, "eve")  # Eve: an ordinary user
        eh = {"Origin": world.gw.base, "X-CSRF-Token": alice_b.cookies["gig_csrf"]}
        assert alice_b.get("/api/v1/profiles/bobs").status_code == 404
        assert alice_b.delete("/api/v1/profiles/bobs", headers=eh).status_code == 404
        assert alice_b.post("/api/v1/profiles/bobs/tokens", json={}, headers=eh).status_code == 404
        assert alice_b.delete(f"/api/v1/profile-tokens/{token_id}", headers=eh).status_code == 404
        assert alice_b.delete(f"/api/v1/api-tokens/{api_id}", headers=eh).status_code == 404
        assert alice_b.delete(f"/api/v1/sessions/{session_id}", headers=eh).status_code == 404
        assert "bobs" not in alice_b.get("/api/v1/profiles").text
        assert alice_b.get("/api/v1/profile-tokens").json() == []
        # Bob's things are all still there.
        assert bob_b.get("/api/v1/profiles/bobs").status_code == 200


def test_signing_out_ends_the_session_and_points_at_the_providers_logout(world: World) -> None:
    with world.browser() as b:
        world.sign_in(b, "bob")
        h = {"Origin": world.gw.base, "X-CSRF-Token": b.cookies["gig_csrf"]}
        out = b.post("/api/auth/logout", headers=h)
        assert out.status_code == 200
        url = out.json()["provider_logout_url"]
        assert url.startswith(world.idp.discovery["end_session_endpoint"])
        assert "client_id=gigmcp" in url
        assert b.get("/api/v1/me").status_code == 401
