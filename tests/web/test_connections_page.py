"""The Connected accounts page in-process, over the real control plane, store (SQLite and
PostgreSQL) and vault key: a user's connection to each vendor an administrator set up,
Connect (a redirect to the vendor's authorization endpoint) and the callback the vendor
sends the browser back to.

The app has its endpoints typed in, on loopback, and nothing listens there: everything
checked here happens before the gateway would dial the vendor (the code exchange comes
only after the state checks).

Attacks, each a test that fails if its guard goes:
- a connect posted without the session's CSRF token, or from another origin, is refused
  and starts no authorization;
- a callback with a state nobody issued (with a code, or with a vendor's error) is a
  clear error (400), stores nothing, shows neither the code nor the state, and leaves an
  authorization really in flight alone;
- a state is good once, and only for the browser session that started it;
- the page lets forms reach the vendor's authorization endpoint (its CSP form-action
  names that origin), and the redirect to it carries state, PKCE and the resource.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gigmcp.control import oauth
from gigmcp.oauthclient.outbound import Outbound
from gigmcp.store.models import OAuthConnection, OAuthPending, OAuthSecret
from tests.support.dashboard import ORIGIN, Browser, Dash, dashboard

SECRET = "vendor-client-secret-CONN-4e2a90"
VENDOR_BASE = "http://127.0.0.1:59322"  # never dialled in these tests
RESOURCE = "https://api.acme.test/v1"
CODE = "authorization-code-never-shown-5d1c"


@pytest.fixture
async def dash(database_url: str, tmp_path: Path) -> AsyncIterator[Dash]:
    async with dashboard(database_url, tmp_path) as d:
        assert d.cfg.keyring is not None
        spec = oauth.AppSpec(
            vendor="acme",
            client_id="gw-acme-client",
            display_name="Acme Corp",
            authorization_endpoint=f"{VENDOR_BASE}/authorize",
            token_endpoint=f"{VENDOR_BASE}/token",
            revocation_endpoint=f"{VENDOR_BASE}/revoke",
            client_secret=SECRET.encode(),
            resource=RESOURCE,
            default_scopes=("openid", "offline_access"),
            extra_params={"prompt": "consent"},
        )
        # The service layer runs its own event loop: off this one.
        await asyncio.to_thread(
            oauth.save_app, d.engine, d.cfg.keyring, Outbound(), d.admin, spec, create=True
        )
        yield d


def counts(dash: Dash) -> tuple[int, int, int]:
    """(authorizations in flight, connections, sealed tokens)."""
    with Session(dash.engine) as s:
        return (
            s.scalar(select(func.count()).select_from(OAuthPending)) or 0,
            s.scalar(select(func.count()).select_from(OAuthConnection)) or 0,
            s.scalar(select(func.count()).where(OAuthSecret.kind.in_(("access", "refresh")))) or 0,
        )


async def connect(browser: Browser) -> dict[str, str]:
    """Connect as the page's button does; the authorization request's parameters."""
    r = await browser.post_form("/connections/acme/connect", {})
    assert r.status_code == 303, r.text
    url = r.headers["location"]
    assert url.startswith(f"{VENDOR_BASE}/authorize?")
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def row(html: str) -> str:
    found = html.split('id="conn-acme"', 1)[1].split("</tr>", 1)[0]
    return " ".join(re.sub(r"<[^>]+>", " ", found).split())


async def test_the_page_lists_the_app_as_not_connected_and_lets_forms_reach_it(
    dash: Dash,
) -> None:
    alice = dash.browser(dash.alice)
    page = await alice.get("/connections")
    assert page.status_code == 200, page.text
    assert 'href="/connections" aria-current="page"' in page.text
    assert "Not connected" in row(page.text) and "Acme Corp" in row(page.text)
    assert "Asked for: openid offline_access" in row(page.text)
    assert 'action="/connections/acme/connect"' in page.text
    assert 'action="/connections/acme/disconnect"' not in page.text  # nothing to disconnect
    assert f'name="csrf" value="{alice.csrf}"' in page.text
    assert "Connect Acme Corp" in page.text
    # The connect form's post is answered with a redirect to the vendor, which the
    # browser follows only if form-action allows that origin.
    csp = page.headers["content-security-policy"]
    form_action = re.search(r"form-action ([^;]+);", csp)
    assert form_action is not None
    assert form_action.group(1).split() == ["'self'", VENDOR_BASE]
    assert "unsafe" not in csp and "script-src 'self';" in csp
    assert SECRET not in page.text and "gw-acme-client" not in page.text


async def test_connect_redirects_to_the_vendor_with_state_pkce_and_the_resource(
    dash: Dash,
) -> None:
    alice = dash.browser(dash.alice)
    r = await alice.post_form("/connections/acme/connect", {})
    assert r.status_code == 303, r.text
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["referrer-policy"] == "no-referrer"
    url = urlsplit(r.headers["location"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{VENDOR_BASE}/authorize"
    asked = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert len(asked["state"]) >= 43
    assert len(asked["code_challenge"]) == 43 and asked["code_challenge_method"] == "S256"
    assert asked["resource"] == RESOURCE
    assert asked["response_type"] == "code" and asked["client_id"] == "gw-acme-client"
    assert asked["redirect_uri"] == f"{ORIGIN}/connections/acme/callback"
    assert asked["scope"].split() == ["openid", "offline_access"]
    assert asked["prompt"] == "consent"
    assert SECRET not in r.headers["location"]
    assert counts(dash) == (1, 0, 0)
    with Session(dash.engine) as s:
        pending = s.scalars(select(OAuthPending)).one()
        assert pending.user_id == dash.alice.user_id
        assert asked["state"] not in pending.state_hash  # only its hash is stored
    # Each connect is a fresh state and a fresh challenge.
    again = await connect(alice)
    assert again["state"] != asked["state"]
    assert again["code_challenge"] != asked["code_challenge"]


async def test_attack_a_connect_without_its_csrf_token_or_from_elsewhere_starts_nothing(
    dash: Dash,
) -> None:
    alice = dash.browser(dash.alice)
    other = dash.browser(dash.alice)  # another session of hers: another token
    attempts = [
        await alice.post_form("/connections/acme/connect", {"go": "1"}, csrf=False),
        await alice.client.post(
            "/connections/acme/connect",
            data={"csrf": other.csrf},
            headers={"Origin": ORIGIN},
        ),
        await alice.post_form("/connections/acme/connect", {}, origin="https://evil.example"),
        await alice.post_form("/connections/acme/connect", {}, origin=None),
    ]
    for r in attempts:
        assert r.status_code == 403, r.text
        assert "location" not in r.headers
    assert counts(dash) == (0, 0, 0)


@pytest.mark.parametrize(
    "query",
    [
        {"state": "bogus", "code": CODE},
        {"state": "bogus", "error": "access_denied"},
        {"state": "bogus", "error": "access_denied", "error_description": "<b>no</b>"},
    ],
)
async def test_attack_a_callback_with_a_state_nobody_issued_stores_nothing(
    dash: Dash, query: dict[str, str]
) -> None:
    alice = dash.browser(dash.alice)
    real = await connect(alice)  # an authorization really in flight
    r = await alice.get("/connections/acme/callback", params=query)
    assert r.status_code == 400, r.text
    assert "this authorization is unknown or was used already: start again" in r.text
    assert "That did not work:" in r.text
    assert CODE not in r.text and "bogus" not in r.text and "<b>no</b>" not in r.text
    assert "location" not in r.headers
    assert counts(dash) == (1, 0, 0)  # nothing stored; the real one still in flight
    # The page still offers to connect.
    assert "Not connected" in row(r.text)
    assert real["state"] not in r.text


async def test_attack_a_callback_without_a_state_is_refused(dash: Dash) -> None:
    alice = dash.browser(dash.alice)
    for query in ({"code": CODE}, {"error": "access_denied"}):
        r = await alice.get("/connections/acme/callback", params=query)
        assert r.status_code == 400, r.text
        assert "carries no state" in r.text and CODE not in r.text
    assert counts(dash) == (0, 0, 0)


async def test_a_state_is_good_once_and_only_for_its_browser_session(dash: Dash) -> None:
    alice = dash.browser(dash.alice)
    elsewhere = dash.browser(dash.alice)  # her other browser
    stolen = await connect(alice)
    r = await elsewhere.get(
        "/connections/acme/callback", params={"state": stolen["state"], "code": CODE}
    )
    assert r.status_code == 400 and "another browser session" in r.text
    # Spent by that attempt: the browser that started it must start again too.
    assert counts(dash) == (0, 0, 0)
    mine = await connect(alice)
    said_no = await alice.get(
        "/connections/acme/callback", params={"state": mine["state"], "error": "access_denied"}
    )
    assert said_no.status_code == 422, said_no.text
    assert "acme did not grant access (access_denied)" in said_no.text
    replay = await alice.get(
        "/connections/acme/callback", params={"state": mine["state"], "code": CODE}
    )
    assert replay.status_code == 400 and "unknown or was used already" in replay.text
    assert counts(dash) == (0, 0, 0)
