"""Connected accounts against a real vendor: oidc-provider (tests/peers/oidc) as the
authorization server, with RFC 8707 resource indicators (JWT access tokens whose
audience is the API's resource), refresh-token rotation and short access-token lifetimes,
on both databases.

What is checked: an app set up by its issuer's metadata; the authorization code flow
with PKCE, ``state`` and ``resource`` through the provider's real login and consent
forms; tokens sealed at rest; the broker's refresh ahead of expiry with the resource sent
again and the rotated refresh token kept; one refresh for concurrent askers in one
process and across two brokers standing for two replicas; a revoked grant giving a clear
error at once and never a retry loop; disconnect revoking at the vendor; the scopes that
servers want; and the attacks: a replayed state, a state from another browser session,
a code brought to another vendor's callback, an ``iss`` of another issuer, metadata
naming another issuer, and endpoints on private or loopback addresses nobody typed.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2 as httpx
import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session

from gigmcp.control import oauth, profiles, servers, users
from gigmcp.control.actor import Actor
from gigmcp.control.users import Identity, RolePolicy
from gigmcp.core.definitions import parse_credentials, parse_egress
from gigmcp.core.instances import InstanceKey
from gigmcp.core.views import ServerDef
from gigmcp.credentials.oauth_broker import TokenBroker
from gigmcp.credentials.vault_provider import VaultCredentials
from gigmcp.egress.inject import InstanceKeys
from gigmcp.errors import (
    Conflict,
    ConnectionNeeded,
    Forbidden,
    Invalid,
    TokenUnavailable,
    Unauthenticated,
)
from gigmcp.netpolicy.hosts import canonical_host
from gigmcp.oauthclient.outbound import Outbound
from gigmcp.store import db
from gigmcp.store import oauth as store
from gigmcp.store.models import OAuthApp, OAuthConnection
from gigmcp.vault.keys import Keyring, MasterKey
from tests.support.oidc import (
    Account,
    Client,
    OidcProvider,
    browser_login,
    callback_params,
    jwt_parts,
    missing,
    start_provider,
)

pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))

ORIGIN = "http://127.0.0.1:18080"  # the gateway's public origin (never dialled here)
RESOURCE = "https://api.example.test/"
RING = Keyring(MasterKey(bytes(range(32))))
SECRET = "vendor-client-secret-7f3a9c"
ALICE = Account("alice", "alice-pw", email="alice@example.test")
SCOPES = ("openid", "offline_access", "api:read")


def _client(vendor: str) -> Client:
    return Client(f"gw-{vendor}", [oauth.callback_url(ORIGIN, vendor)], client_secret=SECRET)


@pytest.fixture(scope="module")
def vendor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    with start_provider(
        tmp_path_factory.mktemp("vendor"),
        clients=[_client("acme"), _client("other")],
        accounts=[ALICE],
        resources={RESOURCE: {"scope": "api:read api:write", "ttl": 3600}},
        rotate_refresh_tokens=True,
    ) as p:
        yield p


def _people(engine: Engine) -> tuple[Actor, Actor]:
    policy = RolePolicy(admin_subjects=frozenset({"root"}))
    admin = users.sign_in(engine, Identity("https://idp.test", "root"), policy)
    alice = users.sign_in(engine, Identity("https://idp.test", "alice"), policy)
    return admin, alice


def _app(vendor: OidcProvider, name: str = "acme", **extra: Any) -> oauth.AppSpec:
    fields: dict[str, Any] = {
        "vendor": name,
        "client_id": f"gw-{name}",
        "client_secret": SECRET.encode(),
        "issuer": vendor.issuer,
        "resource": RESOURCE,
        "default_scopes": SCOPES,
        # oidc-provider grants offline_access only on a consent prompt (OpenID Core).
        "extra_params": {"prompt": "consent"},
        "api_hosts": ("api.example.test",),
    }
    fields.update(extra)
    return oauth.AppSpec(**fields)


def _connect(
    engine: Engine, vendor: OidcProvider, who: Actor, name: str = "acme", session: int = 1
) -> dict[str, str]:
    """The whole browser round trip up to the callback's parameters."""
    url = oauth.begin_connect(engine, RING, who, name, oauth.binding(session), ORIGIN)
    with httpx.Client() as browser:
        back = browser_login(browser, url, ALICE.sub, ALICE.password)
    return callback_params(back)


def _finish(
    engine: Engine, who: Actor, params: dict[str, str], name: str = "acme", session: int = 1
) -> str:
    return oauth.finish_connect(
        engine, RING, Outbound(), who, name,
        oauth.Callback(params.get("state"), params.get("code"), params.get("error"), params.get("iss")),
        oauth.binding(session), ORIGIN,
    )  # fmt: skip


@pytest.fixture
def world(migrated_engine: Engine, vendor: OidcProvider) -> tuple[Engine, Actor, Actor]:
    admin, alice = _people(migrated_engine)
    oauth.save_app(migrated_engine, RING, Outbound(), admin, _app(vendor), create=True)
    return migrated_engine, admin, alice


@pytest.fixture
def connected(
    world: tuple[Engine, Actor, Actor], vendor: OidcProvider
) -> tuple[Engine, Actor, Actor]:
    """The world, with alice's account at acme connected through the vendor's forms."""
    engine, _admin, alice = world
    _finish(engine, alice, _connect(engine, vendor, alice))
    return world


def _refreshes(vendor: OidcProvider, client: str = "gw-acme") -> int:
    return vendor.log().count(f"token issued to {client} (refresh_token)")


def _expire(engine: Engine, user_id: int) -> None:
    """Make the stored access token look due for refresh (it is still valid at the
    vendor: only the gateway's bookkeeping says it expires now)."""
    with Session(engine) as s, s.begin():
        s.execute(
            update(OAuthConnection)
            .where(OAuthConnection.user_id == user_id)
            .values(
                expires_at=datetime.now(UTC) + timedelta(seconds=5),
                refreshed_at=datetime.now(UTC) - timedelta(hours=1),
            )
        )


# --- apps -------------------------------------------------------------------------------


def test_an_app_is_set_up_from_its_issuers_metadata_and_its_secret_is_sealed(
    world: tuple[Engine, Actor, Actor], vendor: OidcProvider
) -> None:
    engine, _admin, alice = world
    info = oauth.get_app(engine, alice, "acme")
    assert info.token_endpoint == vendor.discovery["token_endpoint"]
    assert info.revocation_endpoint == vendor.discovery["revocation_endpoint"]
    assert info.has_secret
    assert SECRET not in repr(info)
    with engine.connect() as c:
        dump = "\n".join(
            str(r)
            for t in ("oauth_apps", "oauth_secrets")
            for r in c.execute(text(f"SELECT * FROM {t}"))
        )
    assert SECRET not in dump and SECRET.encode().hex() not in dump


def test_only_an_administrator_sets_up_apps(
    world: tuple[Engine, Actor, Actor], vendor: OidcProvider
) -> None:
    engine, _admin, alice = world
    with pytest.raises(Forbidden):
        oauth.save_app(engine, RING, Outbound(), alice, _app(vendor, "evil"), create=True)
    with pytest.raises(Forbidden):
        oauth.delete_app(engine, RING, Outbound(), alice, "acme")


def test_an_update_without_a_secret_keeps_the_stored_one(
    world: tuple[Engine, Actor, Actor], vendor: OidcProvider
) -> None:
    engine, admin, _alice = world
    oauth.save_app(
        engine,
        RING,
        Outbound(),
        admin,
        _app(vendor, client_secret=None, display_name="Acme"),
        create=False,
    )
    info = oauth.get_app(engine, admin, "acme")
    assert info.has_secret and info.display_name == "Acme"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"vendor": "Not A Slug"}, "slug"),
        ({"issuer": "http://idp.example.test"}, "plain http"),
        ({"extra_params": {"redirect_uri": "https://evil.test/"}}, "set by the gateway"),
        ({"default_scopes": ("has space",)}, "scope tokens"),
        ({"auth_method": "none", "pkce": False}, "needs PKCE"),
        ({"issuer": "https://user:pw@idp.example.test"}, "user name or password"),
    ],
)
def test_bad_app_settings_are_refused_with_the_reason(
    world: tuple[Engine, Actor, Actor], vendor: OidcProvider, change: dict[str, Any], words: str
) -> None:
    engine, admin, _alice = world
    change = dict(change)
    name = change.pop("vendor", "bad")
    with pytest.raises(Invalid, match=words):
        oauth.save_app(engine, RING, Outbound(), admin, _app(vendor, name, **change), create=True)


# --- connecting -------------------------------------------------------------------------


def test_connecting_runs_the_code_flow_with_pkce_and_the_resource_and_seals_the_tokens(
    world: tuple[Engine, Actor, Actor], vendor: OidcProvider
) -> None:
    engine, _admin, alice = world
    url = oauth.begin_connect(engine, RING, alice, "acme", oauth.binding(1), ORIGIN)
    asked = callback_params(url)
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43
    assert asked["resource"] == RESOURCE and asked["prompt"] == "consent"
    assert asked["redirect_uri"] == f"{ORIGIN}/connections/acme/callback"
    assert set(asked["scope"].split()) == set(SCOPES)
    with httpx.Client() as browser:
        params = callback_params(browser_login(browser, url, ALICE.sub, ALICE.password))
    assert _finish(engine, alice, params) == "/connections"
    st = store.load_state(engine, RING, alice.user_id, "acme")
    assert st is not None and st.access and st.refresh
    _header, claims = jwt_parts(st.access.decode())
    assert claims["aud"] == RESOURCE  # the token is the API's, not the userinfo's
    (info,) = oauth.list_connections(engine, alice)
    assert info.status == "connected" and not info.needs_consent
    assert "api:read" in info.granted_scopes
    with engine.connect() as c:
        dump = "\n".join(str(r) for r in c.execute(text("SELECT * FROM oauth_secrets")))
        dump += "\n".join(str(r) for r in c.execute(text("SELECT * FROM oauth_connections")))
        dump += "\n".join(str(r) for r in c.execute(text("SELECT * FROM audit_events")))
    for token in (st.access, st.refresh):
        assert token.decode() not in dump


def test_a_connection_without_a_refresh_token_is_refused_with_what_to_do(
    world: tuple[Engine, Actor, Actor], vendor: OidcProvider
) -> None:
    engine, admin, alice = world
    # Without offline_access the vendor issues no refresh token.
    oauth.save_app(
        engine, RING, Outbound(), admin,
        _app(vendor, default_scopes=("openid", "api:read")), create=False,
    )  # fmt: skip
    params = _connect(engine, vendor, alice)
    with pytest.raises(Invalid, match="offline access"):
        _finish(engine, alice, params)
    assert store.load_state(engine, RING, alice.user_id, "acme") is None


def test_attack_a_state_is_good_once(
    world: tuple[Engine, Actor, Actor], vendor: OidcProvider
) -> None:
    engine, _admin, alice = world
    params = _connect(engine, vendor, alice)
    _finish(engine, alice, params)
    with pytest.raises(Unauthenticated, match="unknown or was used"):
        _finish(engine, alice, params)


def test_attack_a_state_from_another_browser_session_is_refused(
    world: tuple[Engine, Actor, Actor], vendor: OidcProvider
) -> None:
    engine, _admin, alice = world
    params = _connect(engine, vendor, alice, session=1)
    with pytest.raises(Unauthenticated, match="another browser session"):
        _finish(engine, alice, params, session=2)
    # Spent all the same: the right session cannot use it afterwards either.
    with pytest.raises(Unauthenticated):
        _finish(engine, alice, params, session=1)
    assert store.load_state(engine, RING, alice.user_id, "acme") is None


def test_attack_a_state_of_another_user_is_refused(
    world: tuple[Engine, Actor, Actor], vendor: OidcProvider
) -> None:
    engine, admin, alice = world
    params = _connect(engine, vendor, alice)
    with pytest.raises(Unauthenticated):
        _finish(engine, admin, params)
    assert store.load_state(engine, RING, admin.user_id, "acme") is None


def test_attack_a_code_brought_to_another_vendors_callback_is_refused(
    world: tuple[Engine, Actor, Actor], vendor: OidcProvider
) -> None:
    engine, admin, alice = world
    oauth.save_app(engine, RING, Outbound(), admin, _app(vendor, "other"), create=True)
    params = _connect(engine, vendor, alice, name="other")
    with pytest.raises(Unauthenticated, match="another vendor's callback"):
        _finish(engine, alice, params, name="acme")
    assert store.load_state(engine, RING, alice.user_id, "acme") is None
    assert store.load_state(engine, RING, alice.user_id, "other") is None


def test_attack_an_answer_naming_another_issuer_is_refused(
    world: tuple[Engine, Actor, Actor], vendor: OidcProvider
) -> None:
    engine, _admin, alice = world
    params = _connect(engine, vendor, alice)
    assert params["iss"] == vendor.issuer  # RFC 9207: the provider says who answered
    params["iss"] = "https://attacker.example.test"
    with pytest.raises(Unauthenticated, match="another issuer"):
        _finish(engine, alice, params)


def test_the_vendor_saying_no_is_said_plainly(
    world: tuple[Engine, Actor, Actor], vendor: OidcProvider
) -> None:
    engine, _admin, alice = world
    url = oauth.begin_connect(engine, RING, alice, "acme", oauth.binding(1), ORIGIN)
    with httpx.Client() as browser:
        params = callback_params(
            browser_login(browser, url, ALICE.sub, ALICE.password, consent=False)
        )
    with pytest.raises(Invalid, match=r"did not grant access \(access_denied\)"):
        _finish(engine, alice, params)


def test_an_administrator_viewing_as_a_user_cannot_connect_for_them(
    world: tuple[Engine, Actor, Actor],
) -> None:
    engine, admin, alice = world
    viewing = Actor(alice.user_id, False, real_user_id=admin.user_id, read_only=True)
    with pytest.raises(Forbidden):
        oauth.begin_connect(engine, RING, viewing, "acme", oauth.binding(1), ORIGIN)


ACME_CREDENTIAL = {
    "id": "acme_token", "type": "oauth2", "vendor": "acme", "scopes": ["api:write"],
    "inject": {"header": "Authorization", "format": "Bearer {token}"},
}  # fmt: skip


def test_wanted_scopes_follow_the_users_own_servers_and_ask_for_consent_again(
    connected: tuple[Engine, Actor, Actor], vendor: OidcProvider
) -> None:
    engine, admin, alice = connected
    hosts = {"hosts": ["api.example.test"]}
    servers.add_server(
        engine, admin, "acme-tools", ["/bin/true"], {}, [], None, egress=hosts,
        credentials=[ACME_CREDENTIAL],
    )  # fmt: skip
    # Installed, but in no profile of alice's: her connection is not asked for its scopes
    # (each server would otherwise widen every user's token).
    (info,) = oauth.list_connections(engine, alice)
    assert "api:write" not in info.wanted_scopes and not info.needs_consent
    profiles.create_profile(engine, alice, "alice-p")
    profiles.assign(engine, alice, "alice-p", "acme-tools", True)
    (info,) = oauth.list_connections(engine, alice)
    assert "api:write" in info.wanted_scopes
    assert info.needs_consent
    _finish(engine, alice, _connect(engine, vendor, alice))
    (info,) = oauth.list_connections(engine, alice)
    assert not info.needs_consent and "api:write" in info.granted_scopes


# --- the broker -------------------------------------------------------------------------


def test_the_broker_refreshes_ahead_of_expiry_with_the_resource_and_keeps_the_rotated_token(
    connected: tuple[Engine, Actor, Actor], vendor: OidcProvider
) -> None:
    engine, _admin, alice = connected
    first = store.load_state(engine, RING, alice.user_id, "acme")
    assert first is not None
    broker = TokenBroker(engine, RING, Outbound(), f"{ORIGIN}/connections")
    before = _refreshes(vendor)
    assert asyncio.run(broker.access_token(alice.user_id, "acme")) == first.access
    assert _refreshes(vendor) == before  # fresh: no refresh
    _expire(engine, alice.user_id)
    token = asyncio.run(
        TokenBroker(engine, RING, Outbound(), "x").access_token(alice.user_id, "acme")
    )
    assert token != first.access
    assert _refreshes(vendor) == before + 1
    _header, claims = jwt_parts(token.decode())
    assert claims["aud"] == RESOURCE  # the refresh named the resource again
    now = store.load_state(engine, RING, alice.user_id, "acme")
    assert now is not None and now.refresh != first.refresh  # rotated, and kept
    assert now.generation == first.generation + 1


def test_concurrent_askers_at_expiry_cause_one_refresh_in_one_process_and_across_replicas(
    connected: tuple[Engine, Actor, Actor], vendor: OidcProvider
) -> None:
    engine, _admin, alice = connected
    # The stored token is expired for real: nobody may serve it while the refresh runs.
    with Session(engine) as s, s.begin():
        s.execute(
            update(OAuthConnection).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    before = _refreshes(vendor)
    replicas = [TokenBroker(engine, RING, Outbound(), "x") for _ in range(2)]
    results: list[bytes] = []
    errors: list[BaseException] = []

    def replica(broker: TokenBroker) -> None:
        async def many() -> list[bytes]:
            return list(
                await asyncio.gather(
                    *(broker.access_token(alice.user_id, "acme") for _ in range(8))
                )
            )

        try:
            results.extend(asyncio.run(many()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=replica, args=(b,)) for b in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(results) == 16 and len(set(results)) == 1
    assert _refreshes(vendor) == before + 1
    assert sum(b.refreshes for b in replicas) == 1
    # With rotation, a second refresh with the spent token would have revoked the grant.
    assert "grant revoked" not in vendor.log().split("token issued to gw-acme (refresh_token)")[-1]


def test_a_revoked_grant_gives_a_clear_error_at_once_and_no_retry_loop(
    connected: tuple[Engine, Actor, Actor], vendor: OidcProvider
) -> None:
    engine, _admin, alice = connected
    st = store.load_state(engine, RING, alice.user_id, "acme")
    assert st is not None and st.refresh is not None
    # The user revokes the gateway's access at the vendor (RFC 7009, as the vendor's
    # settings page would).
    r = httpx.post(
        vendor.discovery["revocation_endpoint"],
        data={"token": st.refresh.decode(), "token_type_hint": "refresh_token"},
        auth=("gw-acme", SECRET),
    )
    assert r.status_code == 200
    _expire(engine, alice.user_id)
    with Session(engine) as s, s.begin():
        s.execute(
            update(OAuthConnection).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    broker = TokenBroker(engine, RING, Outbound(), f"{ORIGIN}/connections")
    before = _refreshes(vendor) + vendor.log().count("grant.error")
    with pytest.raises(
        ConnectionNeeded, match=f"acme refused the refresh token.*{ORIGIN}/connections"
    ):
        asyncio.run(broker.access_token(alice.user_id, "acme"))
    asked = _refreshes(vendor) + vendor.log().count("grant.error")
    for _ in range(3):
        with pytest.raises(ConnectionNeeded, match="must be connected again"):
            asyncio.run(broker.access_token(alice.user_id, "acme"))
    assert _refreshes(vendor) + vendor.log().count("grant.error") == asked  # never asked again
    assert asked == before + 1
    (info,) = oauth.list_connections(engine, alice)
    assert info.status == "reconnect" and "invalid_grant" in (info.problem or "")


def test_an_unreachable_token_endpoint_backs_off(
    connected: tuple[Engine, Actor, Actor], vendor: OidcProvider
) -> None:
    engine, _admin, alice = connected
    # The vendor's token endpoint goes away (nothing listens there any more).
    dead = f"http://127.0.0.1:{_closed_port()}/token"
    with Session(engine) as s, s.begin():
        s.execute(update(OAuthApp).values(token_endpoint=dead))
    with Session(engine) as s, s.begin():
        s.execute(
            update(OAuthConnection).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    broker = TokenBroker(engine, RING, Outbound(), "x")
    with pytest.raises(TokenUnavailable, match="could not refresh"):
        asyncio.run(broker.access_token(alice.user_id, "acme"))
    with pytest.raises(TokenUnavailable, match="trying again in"):
        asyncio.run(broker.access_token(alice.user_id, "acme"))
    assert broker.refreshes == 1
    with Session(engine) as s:
        conn = s.scalar(select(OAuthConnection))
        assert conn is not None and conn.failures == 1 and conn.retry_at is not None
        assert conn.status == "connected"


def test_disconnect_revokes_at_the_vendor_and_deletes_the_tokens(
    connected: tuple[Engine, Actor, Actor], vendor: OidcProvider
) -> None:
    engine, _admin, alice = connected
    st = store.load_state(engine, RING, alice.user_id, "acme")
    assert st is not None and st.refresh is not None
    done = oauth.disconnect(engine, RING, Outbound(), alice, "acme")
    assert done.revoked and done.problem is None
    assert store.load_state(engine, RING, alice.user_id, "acme") is None
    with engine.connect() as c:
        assert (
            c.execute(
                text("SELECT count(*) FROM oauth_secrets WHERE kind <> 'client_secret'")
            ).scalar()
            == 0
        )
    r = httpx.post(
        vendor.discovery["token_endpoint"],
        data={
            "grant_type": "refresh_token",
            "refresh_token": st.refresh.decode(),
            "resource": RESOURCE,
        },
        auth=("gw-acme", SECRET),
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    with pytest.raises(ConnectionNeeded, match="no acme account is connected"):
        asyncio.run(TokenBroker(engine, RING, Outbound(), "x").access_token(alice.user_id, "acme"))


# --- where the gateway may be sent ------------------------------------------------------


class _Doc(BaseHTTPRequestHandler):
    doc: dict[str, Any] = {}

    def do_GET(self) -> None:
        body = json.dumps(self.server.doc).encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def metadata_server() -> Iterator[tuple[str, dict[str, Any]]]:
    """A loopback server answering one metadata document, which the test writes."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Doc)
    srv.doc = {}  # type: ignore[attr-defined]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", srv.doc  # type: ignore[attr-defined]
    finally:
        srv.shutdown()
        srv.server_close()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_attack_metadata_naming_another_issuer_is_refused(
    world: tuple[Engine, Actor, Actor], metadata_server: tuple[str, dict[str, Any]]
) -> None:
    engine, admin, _alice = world
    issuer, doc = metadata_server
    doc.update(issuer="https://accounts.attacker.test", authorization_endpoint=f"{issuer}/a",
               token_endpoint=f"{issuer}/t")  # fmt: skip
    with pytest.raises(Invalid, match="names another issuer"):
        oauth.save_app(
            engine,
            RING,
            Outbound(),
            admin,
            oauth.AppSpec("mixed", "c", issuer=issuer, client_secret=b"s"),
            create=True,
        )


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:{other}/token",  # loopback of another origin: nobody typed it
        "https://10.1.2.3/token",  # an address instead of a name
        "http://token.example.test/token",  # plain http off loopback
        "https://[::1]/token",
    ],
)
def test_attack_a_discovered_token_endpoint_on_a_private_address_is_refused(
    world: tuple[Engine, Actor, Actor], metadata_server: tuple[str, dict[str, Any]], endpoint: str
) -> None:
    engine, admin, _alice = world
    issuer, doc = metadata_server
    doc.update(issuer=issuer, authorization_endpoint=f"{issuer}/a",
               token_endpoint=endpoint.format(other=_closed_port()))  # fmt: skip
    with pytest.raises(Invalid, match="refused|nobody configured|not https|IP address"):
        oauth.save_app(
            engine,
            RING,
            Outbound(),
            admin,
            oauth.AppSpec("priv", "c", issuer=issuer, client_secret=b"s"),
            create=True,
        )
    assert not [a for a in oauth.list_apps(engine, admin) if a.vendor == "priv"]


def test_attack_a_name_that_resolves_to_a_private_address_is_refused(
    world: tuple[Engine, Actor, Actor], metadata_server: tuple[str, dict[str, Any]]
) -> None:
    """Resolved by the egress resolver and vetted: ``localhost.`` spelled as a name, and
    any name whose answer is private, never reaches a dial."""
    engine, admin, _alice = world
    issuer, doc = metadata_server
    doc.update(
        issuer=issuer,
        authorization_endpoint=f"{issuer}/a",
        token_endpoint="https://localhost./token",
    )
    with pytest.raises(Invalid, match="blocked|resolve"):
        oauth.save_app(
            engine,
            RING,
            Outbound(),
            admin,
            oauth.AppSpec("priv2", "c", issuer=issuer, client_secret=b"s"),
            create=True,
        )


def test_deleting_an_app_revokes_every_users_grant_and_hides_counts_from_users(
    connected: tuple[Engine, Actor, Actor], vendor: OidcProvider
) -> None:
    engine, admin, alice = connected
    st = store.load_state(engine, RING, alice.user_id, "acme")
    assert st is not None and st.refresh is not None
    assert oauth.get_app(engine, admin, "acme").connections == 1
    assert oauth.get_app(engine, alice, "acme").connections is None  # another user's business
    assert oauth.delete_app(engine, RING, Outbound(), admin, "acme") == 1
    r = httpx.post(
        vendor.discovery["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": st.refresh.decode()},
        auth=("gw-acme", SECRET),
    )
    assert r.json()["error"] == "invalid_grant"
    assert oauth.list_connections(engine, alice) == []


def test_a_password_typed_into_a_url_is_never_repeated(world: tuple[Engine, Actor, Actor]) -> None:
    engine, admin, _alice = world
    spec = oauth.AppSpec(
        "pw", "c", issuer="https://id:hunter2@idp.example.test/", client_secret=b"s"
    )
    with pytest.raises(Invalid) as caught:
        oauth.save_app(engine, RING, Outbound(), admin, spec, create=True)
    assert "hunter2" not in str(caught.value) and "user name or password" in str(caught.value)


# --- found by an attack review, each shown to fail without its fix ----------------------


def _due(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        s.execute(
            update(OAuthConnection).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )


async def test_attack_a_server_naming_a_vendor_gets_its_token_only_toward_the_apps_api_hosts(
    world: tuple[Engine, Actor, Actor], vendor: OidcProvider
) -> None:
    """A registry server declares `vendor: acme` and an egress list with a host of its
    own: the user's acme token goes toward the app's API host only, never the collector."""
    engine, _admin, alice = world
    await asyncio.to_thread(lambda: _finish(engine, alice, _connect(engine, vendor, alice)))
    egress = parse_egress({"hosts": ["api.example.test", "collector.evil.example"]})
    cred = {"id": "acme_token", "type": "oauth2", "vendor": "acme",
            "inject": {"header": "Authorization", "format": "Bearer {token}"}}  # fmt: skip
    server = ServerDef(1, "calendar", 1, ("x",), egress=egress,
                       credentials=parse_credentials([cred], egress))  # fmt: skip
    key = InstanceKey(1, "calendar")
    broker = TokenBroker(engine, RING, Outbound(), "x")
    provider = VaultCredentials(engine, RING, lambda k: alice.user_id, tokens=broker)
    provider.environment_for(key, server)
    keys = InstanceKeys(provider.for_instance(key), egress.hosts)
    for host, expected in (("collector.evil.example", []), ("api.example.test", ["acme_token"])):
        target = canonical_host(host)
        tokens = await keys.fetch(target, verified_tls=True)
        _headers, injected = keys.rewrite(
            target, b"/", [(b"host", host.encode())], verified_tls=True, tokens=tokens
        )
        assert injected == expected, host


def test_attack_an_administrator_cannot_move_the_token_endpoint_under_connected_users(
    connected: tuple[Engine, Actor, Actor],
    vendor: OidcProvider,
    metadata_server: tuple[str, dict[str, Any]],
) -> None:
    engine, admin, _alice = connected
    harvest = f"http://127.0.0.1:{_closed_port()}/collect"
    for change in ({"revocation_endpoint": harvest}, {"token_endpoint": harvest}):
        with pytest.raises(Conflict, match="1 user"):
            oauth.save_app(engine, RING, Outbound(), admin, _app(vendor, **change), create=False)
    info = oauth.get_app(engine, admin, "acme")
    assert info.token_endpoint == vendor.discovery["token_endpoint"]


def test_an_error_about_the_client_is_not_taken_for_the_users_grant(
    connected: tuple[Engine, Actor, Actor], vendor: OidcProvider
) -> None:
    """The client secret is wrong (rotated at the vendor, mistyped): invalid_client is the
    app's problem; every user's connection stays, backs off, and says what to check."""
    engine, admin, alice = connected
    oauth.save_app(
        engine, RING, Outbound(), admin, _app(vendor, client_secret=b"wrong"), create=False
    )
    _due(engine)
    with pytest.raises(TokenUnavailable, match="invalid_client.*administrator"):
        asyncio.run(TokenBroker(engine, RING, Outbound(), "x").access_token(alice.user_id, "acme"))
    (info,) = oauth.list_connections(engine, alice)
    assert info.status == "connected"
    st = store.load_state(engine, RING, alice.user_id, "acme")
    assert st is not None and st.access is not None and st.failures == 1


class _DisconnectMeanwhile(Outbound):
    """The real transport, but the user clicks Disconnect while the vendor's answer to
    the refresh is on its way back (the vendor has rotated the grant already)."""

    def __init__(self, engine: Engine, who: Actor) -> None:
        super().__init__()
        self.engine, self.who, self.rotated = engine, who, b""

    async def request(self, method: str, url: str, **kw: Any) -> Any:
        answer = await super().request(method, url, **kw)
        if not self.rotated and (kw.get("data") or {}).get("grant_type") == "refresh_token":
            self.rotated = json.loads(answer.body)["refresh_token"].encode()
            await asyncio.to_thread(
                oauth.disconnect, self.engine, RING, Outbound(), self.who, "acme"
            )
        return answer


def test_attack_a_disconnect_during_a_refresh_leaves_no_live_grant(
    connected: tuple[Engine, Actor, Actor], vendor: OidcProvider
) -> None:
    engine, _admin, alice = connected
    _due(engine)
    http = _DisconnectMeanwhile(engine, alice)
    with pytest.raises(ConnectionNeeded, match="disconnected"):
        asyncio.run(TokenBroker(engine, RING, http, "x").access_token(alice.user_id, "acme"))
    assert http.rotated
    # The refresh token the vendor rotated to during the race was revoked, not forgotten.
    r = httpx.post(
        vendor.discovery["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": http.rotated.decode(),
              "resource": RESOURCE},
        auth=("gw-acme", SECRET),
    )  # fmt: skip
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert store.load_state(engine, RING, alice.user_id, "acme") is None


def test_attack_a_replica_whose_clock_runs_ahead_cannot_take_a_held_lease(
    postgres_engine: Engine, vendor: OidcProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lease is judged by the database's clock, which every replica shares."""
    engine = postgres_engine
    admin, alice = _people(engine)
    oauth.save_app(engine, RING, Outbound(), admin, _app(vendor), create=True)
    _finish(engine, alice, _connect(engine, vendor, alice))
    st = store.load_state(engine, RING, alice.user_id, "acme")
    assert st is not None
    assert store.claim(engine, st.id, "replica-a", timedelta(seconds=30))
    real = store.utcnow
    # The host's clock, wherever a lease could read it (store/db.py's clock()).
    for module in (store, db):
        monkeypatch.setattr(module, "utcnow", lambda: real() + timedelta(seconds=120))
    assert not store.claim(engine, st.id, "replica-b", timedelta(seconds=30))


def test_a_short_lived_token_is_refreshed_at_half_its_life_not_on_every_ask(
    connected: tuple[Engine, Actor, Actor], vendor: OidcProvider
) -> None:
    engine, _admin, alice = connected
    # A 30-second token, just issued: fresh for its first 15 seconds.
    now = datetime.now(UTC)
    with Session(engine) as s, s.begin():
        s.execute(
            update(OAuthConnection).values(refreshed_at=now, expires_at=now + timedelta(seconds=30))
        )
    broker = TokenBroker(engine, RING, Outbound(), "x")
    for _ in range(5):
        asyncio.run(broker.access_token(alice.user_id, "acme"))
    assert broker.refreshes == 0


def test_attack_an_authorization_endpoint_cannot_write_into_the_pages_policy(
    world: tuple[Engine, Actor, Actor],
) -> None:
    engine, admin, _alice = world
    spec = oauth.AppSpec(
        "csp", "c", client_secret=b"s", authorization_endpoint="https://*; frame-ancestors *; x/a",
        token_endpoint="https://tokens.example.test/t",
    )  # fmt: skip
    with pytest.raises(Invalid, match="control or space character"):
        oauth.save_app(engine, RING, Outbound(), admin, spec, create=True)
