"""The OpenID provider peer (tests/peers/oidc/provider.mjs, oidc-provider 9 on Node 22)
does what the control-plane tests will rely on: real node process, real HTTP, a browser's
part played by tests/support/oidc.py. No gigmcp code is involved.

Covered: the discovery document; the code flow with PKCE for a public client (the ID
token's kid is in the JWKS and its signature checks against it; iss, aud, nonce, email,
groups and the Zitadel roles object are IN the ID token); a confidential client with
client_secret_basic (and the form-encoding of its credentials); refusals (no PKCE, the
plain method, a wrong verifier, a wrong password, a replayed code, denied consent); the
session's reuse, refresh tokens, RP-initiated logout; key rotation with and without the
old keys; and that the process is gone once the block ends.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import jwt
import pytest

from tests.support.oidc import (
    ZITADEL_ROLES,
    Account,
    Client,
    LoginRefused,
    OidcProvider,
    browser_login,
    browser_logout,
    callback_params,
    exchange_code,
    jwt_parts,
    missing,
    parse_forms,
    pkce_pair,
    start_provider,
)

pytestmark = pytest.mark.skipif(missing() is not None, reason=missing() or "")

APP = "http://127.0.0.1:8999/oidc/callback"  # nothing listens: the browser stops before it
SPA = Client("gig-spa", [APP], post_logout_redirect_uris=["http://127.0.0.1:8999/bye"])
WEB = Client(
    "gig-web",
    ["http://127.0.0.1:8999/web/callback"],
    client_secret="s3cret+with/odd%chars:and=more",
    id_token_signed_response_alg="ES256",
)
ALICE = Account(
    "alice-0001",
    "correct horse battery staple",
    email="alice@example.test",
    name="Alice Admin",
    groups=["gig-admins", "staff"],
    roles={"admin": {"301234567890": "acme.example.test"}},
)
BOB = Account("bob-0002", "bob's password", email="bob@example.test", email_verified=False)
ID_TOKEN_TTL = 120


@pytest.fixture(scope="module")
def op(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    with start_provider(
        tmp_path_factory.mktemp("op"),
        clients=[SPA, WEB],
        accounts=[ALICE, BOB],
        ttl={"IdToken": ID_TOKEN_TTL},
    ) as provider:
        yield provider


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def sign_in(
    op: OidcProvider,
    browser: httpx.Client,
    client: Client = SPA,
    account: Account = ALICE,
    trail: list[str] | None = None,
    **extra: str,
) -> tuple[dict[str, str], str, str]:
    """Callback params, the code verifier and the nonce of one sign-in."""
    verifier, challenge = pkce_pair()
    url = op.authorize_url(
        client.client_id, code_challenge=challenge, state="st-1", nonce="n-1", **extra
    )
    callback = browser_login(
        browser, url, account.email or account.sub, account.password, trail=trail
    )
    assert callback.startswith(client.redirect_uris[0] + "?"), callback
    return callback_params(callback), verifier, "n-1"


def tokens(op: OidcProvider, browser: httpx.Client, client: Client = SPA) -> dict[str, Any]:
    params, verifier, _ = sign_in(op, browser, client)
    r = exchange_code(op, client, params["code"], verifier)
    assert r.status_code == 200, r.text
    return dict(r.json())


def verified(op: OidcProvider, id_token: str, client: Client) -> dict[str, Any]:
    """The ID token's claims, its signature checked with PyJWT against the JWKS."""
    header, _ = jwt_parts(id_token)
    jwk = next(k for k in op.jwks()["keys"] if k["kid"] == header["kid"])
    key = jwt.PyJWK(jwk)
    return dict(
        jwt.decode(
            id_token,
            key.key,
            algorithms=[client.id_token_signed_response_alg],
            audience=client.client_id,
            issuer=op.issuer,
        )
    )


def test_discovery_names_the_issuer_endpoints_and_s256(op: OidcProvider) -> None:
    d = op.discovery
    assert d["issuer"] == op.issuer and op.issuer.startswith("http://127.0.0.1:")
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri", "end_session_endpoint"):
        assert d[name].startswith(op.issuer + "/"), name
    assert d["code_challenge_methods_supported"] == ["S256"]
    assert {"RS256", "ES256"} <= set(d["id_token_signing_alg_values_supported"])
    assert {"openid", "email", "profile", "groups", "roles"} <= set(d["scopes_supported"])
    assert ZITADEL_ROLES in d["claims_supported"]
    keys = op.jwks()["keys"]
    assert {(k["kty"], k["alg"]) for k in keys} == {("RSA", "RS256"), ("EC", "ES256")}
    assert not any("d" in k for k in keys)  # public halves only


def test_public_client_code_flow_with_pkce_gives_an_id_token_with_the_claims(
    op: OidcProvider, browser: httpx.Client
) -> None:
    trail: list[str] = []
    params, verifier, nonce = sign_in(op, browser, trail=trail)
    assert params["state"] == "st-1" and params["iss"] == op.issuer and params["code"]
    # A login page, then a consent page, each a form posted over plain HTTP.
    assert [step for step in trail if step.startswith("form")] == ["form login", "form consent"]
    assert trail[0].startswith("GET /auth ") and trail[-1].startswith("GET /auth/")
    r = exchange_code(op, SPA, params["code"], verifier)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer" and body["access_token"]

    header, claims = jwt_parts(body["id_token"])
    assert header["alg"] == "RS256"
    assert header["kid"] in {k["kid"] for k in op.jwks()["keys"]}
    assert claims["iss"] == op.issuer and claims["aud"] == SPA.client_id
    assert claims["sub"] == ALICE.sub and claims["nonce"] == nonce
    assert claims["email"] == ALICE.email and claims["email_verified"] is True
    assert claims["name"] == ALICE.name
    assert claims["groups"] == ["gig-admins", "staff"]
    assert claims[ZITADEL_ROLES] == {"admin": {"301234567890": "acme.example.test"}}
    assert claims["exp"] - claims["iat"] == ID_TOKEN_TTL  # the configured TTL
    # The signature holds against the published key (PyJWT, not the provider's code).
    assert verified(op, body["id_token"], SPA) == claims

    info = httpx.get(
        op.discovery["userinfo_endpoint"],
        headers={"authorization": f"Bearer {body['access_token']}"},
    )
    assert info.status_code == 200 and info.json()[ZITADEL_ROLES] == claims[ZITADEL_ROLES]


def test_scopes_not_asked_for_leave_their_claims_out(
    op: OidcProvider, browser: httpx.Client
) -> None:
    params, verifier, _ = sign_in(op, browser, scope="openid email")
    _, claims = jwt_parts(exchange_code(op, SPA, params["code"], verifier).json()["id_token"])
    assert claims["email"] == ALICE.email
    assert "groups" not in claims and ZITADEL_ROLES not in claims and "name" not in claims


def test_confidential_client_uses_client_secret_basic_and_es256(
    op: OidcProvider, browser: httpx.Client
) -> None:
    params, verifier, _ = sign_in(op, browser, WEB)
    # Credentials sent raw in Basic (not form-encoded first, RFC 6749 §2.3.1) are refused:
    # oidc-provider form-decodes them, and "%ch" is no escape.
    raw = exchange_code(op, WEB, params["code"], verifier, form_encode_basic=False)
    assert raw.status_code == 400 and raw.json()["error"] == "invalid_request", raw.text
    assert "not properly encoded" in raw.json()["error_description"]

    params, verifier, _ = sign_in(op, browser, WEB)
    anonymous = httpx.post(
        op.discovery["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": params["code"],
            "redirect_uri": WEB.redirect_uris[0],
            "code_verifier": verifier,
            "client_id": WEB.client_id,
        },
    )
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_client"

    params, verifier, _ = sign_in(op, browser, WEB)
    r = exchange_code(op, WEB, params["code"], verifier)
    assert r.status_code == 200, r.text
    header, claims = jwt_parts(r.json()["id_token"])
    assert header["alg"] == "ES256" and claims["aud"] == WEB.client_id
    assert verified(op, r.json()["id_token"], WEB)["sub"] == ALICE.sub


def test_public_client_without_pkce_is_refused(op: OidcProvider, browser: httpx.Client) -> None:
    url = op.authorize_url(SPA.client_id)  # no code_challenge
    r = browser.get(url, follow_redirects=False)
    assert r.is_redirect, r.text
    params = callback_params(r.headers["location"])
    assert r.headers["location"].startswith(APP + "?")
    assert params["error"] == "invalid_request" and "PKCE" in params["error_description"]
    assert "code" not in params


def test_plain_pkce_method_is_refused(op: OidcProvider, browser: httpx.Client) -> None:
    url = op.authorize_url(SPA.client_id, code_challenge="a" * 43, code_challenge_method="plain")
    r = browser.get(url, follow_redirects=False)
    params = callback_params(r.headers["location"])
    assert params["error"] == "invalid_request" and "code" not in params


def test_wrong_code_verifier_is_refused(op: OidcProvider, browser: httpx.Client) -> None:
    params, _verifier, _ = sign_in(op, browser)
    other, _ = pkce_pair()
    r = exchange_code(op, SPA, params["code"], other)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_wrong_password_shows_the_login_form_again(op: OidcProvider, browser: httpx.Client) -> None:
    _, challenge = pkce_pair()
    url = op.authorize_url(SPA.client_id, code_challenge=challenge)
    with pytest.raises(LoginRefused) as refused:
        browser_login(browser, url, ALICE.email or "", "not the password")
    forms = {f.id: f for f in parse_forms(refused.value.page)}
    assert set(forms["login"].inputs) == {"csrf", "login", "password"}
    assert "Invalid login or password." in refused.value.page
    assert ALICE.password not in op.log() and "not the password" not in op.log()


def test_a_code_is_good_once_replay_is_invalid_grant(
    op: OidcProvider, browser: httpx.Client
) -> None:
    params, verifier, _ = sign_in(op, browser)
    first = exchange_code(op, SPA, params["code"], verifier)
    assert first.status_code == 200, first.text
    again = exchange_code(op, SPA, params["code"], verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_second_sign_in_in_the_same_browser_skips_login_and_consent(
    op: OidcProvider, browser: httpx.Client
) -> None:
    sign_in(op, browser, account=BOB)
    verifier, challenge = pkce_pair()
    url = op.authorize_url(SPA.client_id, code_challenge=challenge)
    # No form at all this time: the provider's session cookie and the grant answer.
    trail: list[str] = []
    params = callback_params(browser_login(browser, url, "nobody", "no password", trail=trail))
    assert len(trail) == 1 and trail[0].startswith("GET /auth "), trail
    r = exchange_code(op, SPA, params["code"], verifier)
    assert r.status_code == 200, r.text
    assert jwt_parts(r.json()["id_token"])[1]["sub"] == BOB.sub


def test_denied_consent_sends_access_denied_to_the_client(
    op: OidcProvider, browser: httpx.Client
) -> None:
    _, challenge = pkce_pair()
    url = op.authorize_url(SPA.client_id, code_challenge=challenge, state="st-deny")
    callback = browser_login(browser, url, BOB.sub, BOB.password, consent=False)
    params = callback_params(callback)
    assert params["error"] == "access_denied" and params["state"] == "st-deny"
    assert "code" not in params


def test_refresh_token_needs_offline_access_and_prompt_consent(
    op: OidcProvider, browser: httpx.Client
) -> None:
    # offline_access without prompt=consent is dropped silently: no refresh token.
    params, verifier, _ = sign_in(op, browser, scope="openid offline_access")
    assert "refresh_token" not in exchange_code(op, SPA, params["code"], verifier).json()

    params, verifier, _ = sign_in(op, browser, scope="openid offline_access", prompt="consent")
    body = exchange_code(op, SPA, params["code"], verifier).json()
    r = httpx.post(
        op.discovery["token_endpoint"],
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": SPA.client_id,
        },
    )
    assert r.status_code == 200, r.text
    assert jwt_parts(r.json()["id_token"])[1]["sub"] == ALICE.sub


def test_rp_initiated_logout_ends_the_session(op: OidcProvider, browser: httpx.Client) -> None:
    id_token = tokens(op, browser)["id_token"]
    end = httpx.URL(
        op.discovery["end_session_endpoint"],
        params={
            "id_token_hint": id_token,
            "post_logout_redirect_uri": SPA.post_logout_redirect_uris[0],
            "state": "bye-1",
        },
    )
    trail: list[str] = []
    back = browser_logout(browser, str(end), trail=trail)
    assert "form op.logoutForm" in trail, trail
    assert back == f"{SPA.post_logout_redirect_uris[0]}?state=bye-1"
    # Signed out: the next sign-in asks for the password again.
    _, challenge = pkce_pair()
    with pytest.raises(LoginRefused):
        browser_login(browser, op.authorize_url(SPA.client_id, code_challenge=challenge), "x", "y")


def test_rotated_keys_sign_new_id_tokens_with_a_new_kid(tmp_path: Path) -> None:
    with (
        start_provider(tmp_path, clients=[SPA, WEB], accounts=[ALICE]) as op,
        httpx.Client(timeout=10) as browser,
    ):
        before = jwt_parts(tokens(op, browser)["id_token"])[0]["kid"]
        old = {k["kid"] for k in op.jwks()["keys"]}

        new = op.rotate_keys()
        keys = [k["kid"] for k in op.jwks()["keys"]]
        assert keys[:2] == new and set(keys[2:]) == old  # new first, old kept
        fresh = tokens(op, browser)["id_token"]
        assert jwt_parts(fresh)[0]["kid"] == new[0] != before
        verified(op, fresh, SPA)
        es = tokens(op, browser, WEB)["id_token"]  # the session survived the swap
        assert jwt_parts(es)[0]["kid"] == new[1]

        newest = op.rotate_keys(drop_old=True)
        assert [k["kid"] for k in op.jwks()["keys"]] == newest
        assert jwt_parts(tokens(op, browser)["id_token"])[0]["kid"] == newest[0]


def test_the_process_is_gone_after_the_block(tmp_path: Path) -> None:
    started = time.monotonic()
    with start_provider(tmp_path, clients=[SPA], accounts=[ALICE]) as op:
        assert httpx.get(op.discovery["jwks_uri"]).status_code == 200
        process = op.process
    assert time.monotonic() - started < 30
    assert process.poll() is not None
    with pytest.raises(httpx.ConnectError):
        httpx.get(op.discovery["jwks_uri"])


def test_a_bad_client_fails_the_start_with_the_reason(tmp_path: Path) -> None:
    bad = Client("bad", ["not a url"])
    with (
        pytest.raises(RuntimeError, match="redirect_uris must only contain valid uris"),
        start_provider(tmp_path, clients=[bad], accounts=[ALICE]),
    ):
        pass
