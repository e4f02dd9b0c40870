"""The control plane of a gateway with no identity provider, through a real `gigmcp serve`
and real HTTP: the one-time link of the embedded default, the browser session it opens,
CSRF on a browser's changes, personal API tokens for scripts, and the kinds of secrets
kept apart. Attack by attack, each test fails if its guard is removed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.support.gateway import TIME, GatewayProc, gateway

LINK = re.compile(r"(http://\S+/api/auth/link\?token=gig_ll_[A-Za-z0-9_-]+)")


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    with gateway(tmp_path_factory.mktemp("api")) as g:
        g.add_server("time", TIME)
        g.profile("alpha", "time")
        g.start()
        yield g


def new_link(gw: GatewayProc) -> str:
    link = gw.cli("login-link").stdout.strip()
    assert LINK.fullmatch(link), link
    return link


def browser(gw: GatewayProc) -> httpx.Client:
    return httpx.Client(base_url=gw.base, timeout=30, follow_redirects=False)


def sign_in(gw: GatewayProc, client: httpx.Client) -> str:
    """Open a fresh link in ``client``; the CSRF token its pages would send back."""
    r = client.get(new_link(gw))
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/"
    return client.cookies["gig_csrf"]


def same_origin(gw: GatewayProc, csrf: str) -> dict[str, str]:
    return {"Origin": gw.base, "X-CSRF-Token": csrf}


def test_attack_no_live_link_is_written_into_a_log(gw: GatewayProc) -> None:
    """`gigmcp serve` under a service manager writes to a journal, not a terminal: it
    says how to get a link instead of printing one anyone reading the log could use."""
    assert "NO IDENTITY PROVIDER" in gw.output() and "gigmcp login-link" in gw.output()
    assert "gig_ll_" not in gw.output()


def test_a_link_signs_in_the_local_administrator_once(gw: GatewayProc) -> None:
    link = new_link(gw)
    with browser(gw) as b:
        r = b.get(link)
        assert r.status_code == 303
        me = b.get("/api/v1/me").json()
        assert (me["issuer"], me["subject"], me["role"]) == ("local", "admin", "admin")
    with browser(gw) as other:  # the same link, again: refused
        r = other.get(link)
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "unauthenticated"
        assert "gig_ll_" not in r.text


def test_attack_a_link_carried_in_through_a_proxy_is_refused(gw: GatewayProc) -> None:
    link = new_link(gw)
    with browser(gw) as b:
        for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
            r = b.get(link, headers={header: "203.0.113.7"})
            assert r.status_code == 404, header
        assert b.get(link).status_code == 303  # unspent: the refusals did not use it


def test_the_session_cookie_is_httponly_lax_and_the_link_leaves_no_referrer(
    gw: GatewayProc,
) -> None:
    with browser(gw) as b:
        r = b.get(new_link(gw))
    cookies = r.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("gig_session="))
    assert "HttpOnly" in session and "SameSite=lax" in session and "Path=/" in session
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["cache-control"] == "no-store"


def test_without_a_session_the_api_says_to_sign_in(gw: GatewayProc) -> None:
    with browser(gw) as b:
        r = b.get("/api/v1/me")
    assert r.status_code == 401 and r.json()["code"] == "unauthenticated"


def test_a_planted_session_cookie_is_worthless(gw: GatewayProc) -> None:
    """Fixation: a cookie set before sign-in is not the session sign-in opens."""
    with browser(gw) as b:
        b.cookies.set("gig_session", "gig_ws_" + "A" * 43, domain="127.0.0.1", path="/")
        assert b.get("/api/v1/me").status_code == 401
        sign_in(gw, b)
        assert b.cookies["gig_session"] != "gig_ws_" + "A" * 43
        assert b.get("/api/v1/me").status_code == 200


def test_attack_csrf_a_browser_change_needs_its_own_token_and_origin(gw: GatewayProc) -> None:
    with browser(gw) as b, browser(gw) as other:
        csrf = sign_in(gw, b)
        other_csrf = sign_in(gw, other)
        body = {"slug": "from-browser"}
        no_token = b.post("/api/v1/profiles", json=body, headers={"Origin": gw.base})
        assert no_token.status_code == 403 and no_token.json()["code"] == "forbidden"
        wrong_token = b.post("/api/v1/profiles", json=body, headers=same_origin(gw, other_csrf))
        assert wrong_token.status_code == 403
        cross_site = b.post(
            "/api/v1/profiles",
            json=body,
            headers={"Origin": "https://evil.example", "X-CSRF-Token": csrf},
        )
        assert cross_site.status_code == 403
        no_origin = b.post("/api/v1/profiles", json=body, headers={"X-CSRF-Token": csrf})
        assert no_origin.status_code == 403
        ok = b.post("/api/v1/profiles", json=body, headers=same_origin(gw, csrf))
        assert ok.status_code == 201, ok.text
        assert ok.json() == {"slug": "from-browser", "assignments": []}


def test_sign_out_ends_the_session(gw: GatewayProc) -> None:
    with browser(gw) as b:
        csrf = sign_in(gw, b)
        session = b.cookies["gig_session"]
        out = b.post("/api/auth/logout", headers=same_origin(gw, csrf))
        assert out.status_code == 200 and out.json() == {"provider_logout_url": None}
    with browser(gw) as replay:
        replay.cookies.set("gig_session", session)
        assert replay.get("/api/v1/me").status_code == 401


def test_an_api_token_works_for_scripts_and_a_read_token_changes_nothing(
    gw: GatewayProc,
) -> None:
    with browser(gw) as b:
        csrf = sign_in(gw, b)
        h = same_origin(gw, csrf)
        write = b.post("/api/v1/api-tokens", json={"name": "ci", "scope": "write"}, headers=h)
        read = b.post("/api/v1/api-tokens", json={"name": "ro", "scope": "read"}, headers=h)
        assert write.status_code == read.status_code == 201
        listed = b.get("/api/v1/api-tokens").json()
    w, r = write.json()["token"], read.json()["token"]
    assert w.startswith("gig_at_") and all(w not in str(t) for t in listed)
    with browser(gw) as script:  # no cookie, no CSRF token: a bearer token alone
        bearer = {"Authorization": f"Bearer {w}"}
        # A token cannot make itself a successor: tokens come from a signed-in browser.
        again = script.post(
            "/api/v1/api-tokens", json={"name": "x", "scope": "write"}, headers=bearer
        )
        assert again.status_code == 403
        made = script.post("/api/v1/profiles", json={"slug": "from-script"}, headers=bearer)
        assert made.status_code == 201, made.text
        ro = {"Authorization": f"Bearer {r}"}
        assert script.get("/api/v1/profiles", headers=ro).status_code == 200
        refused = script.post("/api/v1/profiles", json={"slug": "nope"}, headers=ro)
        assert refused.status_code == 403


def test_attack_token_kinds_stay_apart(gw: GatewayProc) -> None:
    """A profile token never opens the API; an API token never opens an MCP endpoint."""
    profile_token = gw.tokens["alpha"]
    with browser(gw) as b:
        csrf = sign_in(gw, b)
        api = b.post(
            "/api/v1/api-tokens",
            json={"name": "kinds", "scope": "write"},
            headers=same_origin(gw, csrf),
        ).json()["token"]
        session = b.cookies["gig_session"]
    with browser(gw) as c:
        for secret in (profile_token, session, csrf):
            r = c.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
            assert r.status_code == 401, secret[:7]
        init = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        }
        for secret in (api, session):
            r = c.post(
                "/mcp/p/alpha",
                json=init,
                headers={
                    "Authorization": f"Bearer {secret}",
                    "Accept": "application/json, text/event-stream",
                },
            )
            assert r.status_code == 401, secret[:7]


def test_minting_a_profile_token_returns_it_once_with_client_configuration(
    gw: GatewayProc,
) -> None:
    with browser(gw) as b:
        csrf = sign_in(gw, b)
        r = b.post(
            "/api/v1/profiles/alpha/tokens", json={"name": "laptop"}, headers=same_origin(gw, csrf)
        )
        assert r.status_code == 201, r.text
        minted = r.json()
        token = minted["token"]
        assert minted["url"] == gw.url("alpha")
        assert token in minted["clients"]["claude_code"]
        assert minted["clients"]["cursor"]["mcpServers"]["gigmcp-alpha"]["url"] == gw.url("alpha")
        listed = b.get("/api/v1/profile-tokens", params={"profile": "alpha"}).text
        assert token not in listed and "laptop" in listed


def test_errors_are_problem_documents_that_name_the_field(gw: GatewayProc) -> None:
    with browser(gw) as b:
        csrf = sign_in(gw, b)
        h = same_origin(gw, csrf)
        bad = b.post("/api/v1/profiles", json={"slug": "Not A Slug"}, headers=h)
        assert bad.status_code == 422
        assert bad.headers["content-type"] == "application/problem+json"
        assert bad.json()["errors"][0]["field"] == "slug"
        assert "Not A Slug" not in bad.text  # the input is not echoed
        garbage = b.post(
            "/api/v1/profiles",
            content=b"{not json",
            headers=dict(h, **{"Content-Type": "application/json"}),
        )
        assert garbage.status_code == 422
        assert b.get("/api/v1/nothing-here").json()["code"] == "not-found"
        missing = b.get("/api/v1/profiles/no-such-profile")
        assert missing.status_code == 404 and missing.json()["code"] == "not-found"
        huge = b.post("/api/v1/profiles", content=b"x" * (2 * 1024 * 1024), headers=h)
        assert huge.status_code == 413
        for r in (bad, garbage, missing, huge):
            assert "Traceback" not in r.text and "SELECT" not in r.text


def test_the_cli_and_the_api_agree(gw: GatewayProc) -> None:
    with browser(gw) as b:
        csrf = sign_in(gw, b)
        made = b.post(
            "/api/v1/profiles", json={"slug": "made-by-api"}, headers=same_origin(gw, csrf)
        )
        assert made.status_code == 201
    assert "made-by-api" in gw.cli("profile", "list").stdout
    gw.cli("profile", "create", "made-by-cli")
    with browser(gw) as b:
        sign_in(gw, b)
        slugs = {p["slug"] for p in b.get("/api/v1/profiles").json()}
    assert {"made-by-api", "made-by-cli", "alpha"} <= slugs


def test_listening_beyond_loopback_turns_the_control_plane_off(tmp_path: Path) -> None:
    with gateway(tmp_path) as g:
        g.add_server("time", TIME)
        g.profile("beta", "time")
        g.start(listen_host="0.0.0.0")
        assert "control plane OFF" in g.output() and "gig_ll_" not in g.output()
        with httpx.Client(base_url=g.base, timeout=30) as c:
            r = c.get("/api/v1/me")
            assert r.status_code == 404 and r.json()["code"] == "control_plane_disabled"
            assert "GIG_OIDC_ISSUER" in r.json()["detail"]
        refused = g.cli("login-link", check=False)
        assert refused.returncode == 2 and "beyond loopback" in refused.stderr
