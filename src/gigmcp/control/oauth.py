"""Connected accounts: administrators' OAuth apps per vendor, and each user's connections.

An app is an administrator's registration at one vendor's authorization server: the
issuer (its metadata discovered through the SSRF guard, RFC 8414 or OpenID Connect) or
the endpoints typed in, the client id, the client secret (sealed, write-only), the
client authentication, PKCE (on by default), the RFC 8707 resource, default scopes and
extra authorization parameters. Endpoints are checked when the app is saved and again
at every use (``oauthclient/outbound.py``): https, public addresses only; plain http only
on a loopback address an administrator typed (tests). A discovered endpoint on another
origin than the issuer must pass the same check, so a metadata document cannot point
the gateway at a private address.

A connection is made in two steps. :func:`begin_connect` records an authorization in
flight (the hash of a fresh ``state``, the user, the browser session it was started
from, the sealed PKCE verifier) and returns the vendor's authorization URL;
:func:`finish_connect` takes the callback: the state is looked up by its hash and
deleted in the same transaction (single use), and must belong to this user, this
session, this vendor's callback (a mix-up between two vendors' callbacks is refused, as
is an ``iss`` other than the app's issuer, RFC 9207), and be younger than ten minutes.
The code is exchanged with the verifier and the resource; an answer without a refresh
token is refused (the gateway needs offline access) and its access token revoked.

The scopes asked are the union of the app's defaults and the scopes that installed
servers declare for the vendor; when that union grows past what a connection was granted
with, the connection says it needs consent again.

Owns these operations for every skin. It must never return, log or audit a token,
code, verifier or secret, accept a callback that is not this session's own, or let a
non-administrator see or change an app.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gigmcp.control import rows, users
from gigmcp.control.actor import Actor
from gigmcp.core.definitions import SCOPE, VENDOR
from gigmcp.errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from gigmcp.netpolicy.hosts import HostError, canonical_pattern
from gigmcp.oauthclient.client import (
    AUTH_METHODS,
    RESERVED_PARAMS,
    GrantRefused,
    ServerUnavailable,
    VendorClient,
    pkce_pair,
)
from gigmcp.oauthclient.metadata import MetadataError, discover, same_origin
from gigmcp.oauthclient.outbound import (
    Outbound,
    OutboundRefused,
    check_operator_url,
    is_loopback_host,
    origin_of,
    shown,
)
from gigmcp.oidc.flow import safe_return
from gigmcp.store import oauth as store
from gigmcp.store.models import (
    OAuthApp,
    OAuthConnection,
    OAuthPending,
    OAuthSecret,
    Profile,
    ProfileServer,
    Server,
    utcnow,
)
from gigmcp.vault.keys import Keyring

PENDING_LIFETIME = timedelta(minutes=10)
MAX_SCOPES = 64
MAX_URL = 2048
MAX_EXTRA = 16
_PARAM_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_PRINTABLE = re.compile(r"^[\x20-\x7e]{0,512}$")


# --- apps (administrators) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AppSpec:
    """An app as an administrator enters it. ``client_secret`` None on an update keeps
    the stored one; endpoints None are discovered from ``issuer``."""

    vendor: str
    client_id: str
    display_name: str | None = None
    issuer: str | None = None
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    revocation_endpoint: str | None = None
    client_secret: bytes | None = field(default=None, repr=False)
    auth_method: str = "client_secret_basic"
    pkce: bool = True
    resource: str | None = None
    default_scopes: tuple[str, ...] = ()
    extra_params: dict[str, str] = field(default_factory=dict)
    api_hosts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AppInfo:
    """An app as every skin shows it: never the secret, only whether one is set."""

    vendor: str
    display_name: str
    issuer: str | None
    authorization_endpoint: str
    token_endpoint: str
    revocation_endpoint: str | None
    client_id: str
    auth_method: str
    has_secret: bool
    pkce: bool
    resource: str | None
    default_scopes: tuple[str, ...]
    extra_params: dict[str, str]
    api_hosts: tuple[str, ...]
    wanted_scopes: tuple[str, ...]
    connections: int | None  # how many users connected: administrators only
    updated_at: datetime


def _admin(engine: Engine, actor: Actor, what: str) -> None:
    """The real user's role (an administrator viewing as someone else is one, and is
    refused by the read-only rule instead; a user viewed by one is not)."""
    try:
        users.require_admin(engine, actor)
    except Forbidden:
        raise Forbidden(f"only an administrator may {what}") from None
    rows.writable(actor)


def _check_spec(spec: AppSpec) -> None:
    if not VENDOR.match(spec.vendor):
        raise Invalid(f"vendor {spec.vendor[:64]!r}: a slug of a-z, 0-9 and '-'")
    if not spec.client_id or not _PRINTABLE.match(spec.client_id):
        raise Invalid("client id: 1-512 printable characters")
    if spec.display_name is not None and (
        not _PRINTABLE.match(spec.display_name) or len(spec.display_name) > 255
    ):
        raise Invalid("display name: at most 255 printable characters")
    for name in ("issuer", "authorization_endpoint", "token_endpoint", "revocation_endpoint",
                 "resource"):  # fmt: skip
        value = getattr(spec, name)
        if value is not None and len(value) > MAX_URL:
            raise Invalid(f"{name.replace('_', ' ')}: at most {MAX_URL} characters")
    if spec.auth_method not in AUTH_METHODS:
        raise Invalid(f"client authentication: one of {', '.join(AUTH_METHODS)}")
    if spec.auth_method == "none" and not spec.pkce:
        raise Invalid("a public client (no client secret) needs PKCE")
    if spec.client_secret is not None and (
        not spec.client_secret or len(spec.client_secret) > 4096
        or any(b < 0x20 or b == 0x7F for b in spec.client_secret)
    ):  # fmt: skip
        raise Invalid("client secret: 1-4096 characters, no control character")
    if len(spec.default_scopes) > MAX_SCOPES or not all(
        SCOPE.match(x) for x in spec.default_scopes
    ):
        raise Invalid("default scopes: at most 64 OAuth scope tokens (no spaces or quotes)")
    if len(spec.api_hosts) > MAX_SCOPES:
        raise Invalid("API hosts: at most 64")
    for host in spec.api_hosts:
        try:
            canonical_pattern(host)
        except HostError as exc:
            raise Invalid(f"API host {host[:100]!r}: {exc}") from None
    if len(spec.extra_params) > MAX_EXTRA:
        raise Invalid(f"extra parameters: at most {MAX_EXTRA}")
    for name, value in spec.extra_params.items():
        if not _PARAM_NAME.match(name) or not isinstance(value, str) or not _PRINTABLE.match(value):
            raise Invalid(
                f"extra parameter {name[:64]!r}: a name of a-z, 0-9, '_.-' and a printable value"
            )
        if name in RESERVED_PARAMS:
            raise Invalid(f"extra parameter {name!r} is set by the gateway itself")
    if spec.resource is not None and (
        not _PRINTABLE.match(spec.resource) or "#" in spec.resource or " " in spec.resource
        or not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", spec.resource)
    ):  # fmt: skip
        raise Invalid("resource: an absolute URI without a fragment (RFC 8707)")


async def _endpoints(spec: AppSpec, http: Outbound) -> tuple[str, str, str | None]:
    """The three endpoints, discovered or typed, each checked against the guard."""
    typed = [u for u in (spec.issuer, spec.authorization_endpoint, spec.token_endpoint,
                         spec.revocation_endpoint) if u]  # fmt: skip
    for url in typed:
        check_operator_url(url, shown(url))
    trusted = frozenset(origin_of(u) for u in typed if is_loopback_host(_host(u)))
    auth, token, revoke = spec.authorization_endpoint, spec.token_endpoint, spec.revocation_endpoint
    if spec.issuer:
        meta = await discover(http, spec.issuer, trusted)
        if spec.pkce and meta.code_challenge_methods and "S256" not in meta.code_challenge_methods:
            raise Invalid(f"{spec.vendor}: the authorization server does not offer PKCE with S256")
        for found in (meta.authorization_endpoint, meta.token_endpoint, meta.revocation_endpoint):
            if found and not same_origin(found, spec.issuer):
                # Another origin than the issuer's: public https only, like any egress.
                await http.check(found)
        auth = auth or meta.authorization_endpoint
        token = token or meta.token_endpoint
        revoke = revoke or meta.revocation_endpoint
        if same_origin(meta.token_endpoint, spec.issuer):
            trusted = trusted | {origin_of(spec.issuer)}
    if not auth or not token:
        raise Invalid("an issuer to discover, or both the authorization and token endpoints")
    for endpoint in (token, revoke):
        if endpoint:
            await http.check(endpoint, trusted)
    return auth, token, revoke


def _host(url: str) -> str:
    return urlsplit(url).hostname or ""


def save_app(
    engine: Engine,
    keyring: Keyring,
    http: Outbound,
    actor: Actor,
    spec: AppSpec,
    *,
    create: bool,
    for_server: bool = False,
) -> AppInfo:
    """Create (``create``) or replace an app; the secret sealed, never shown again.
    ``for_server``: made by adding a remote server (``control/remote.py``), which any
    user may do for their own server; otherwise an administrator's business."""
    if for_server:
        rows.writable(actor)
    else:
        _admin(engine, actor, "configure OAuth apps")
    _check_spec(spec)
    with Session(engine) as s:
        # Before any network call: the answer does not depend on the vendor's metadata.
        exists = s.scalar(select(OAuthApp.id).where(OAuthApp.vendor == spec.vendor)) is not None
    if create and exists:
        raise Conflict(f"an app for {spec.vendor} exists already; edit it")
    if not create and not exists:
        raise NotFound(f"no OAuth app for {spec.vendor}")
    try:
        auth, token, revoke = asyncio.run(_endpoints(spec, http))
    except (MetadataError, OutboundRefused) as exc:
        raise Invalid(f"{spec.vendor}: {exc}") from None
    action = "oauth.app.create" if create else "oauth.app.update"
    try:
        with rows.change(engine, actor, action, detail=spec.vendor) as s:
            app = s.scalar(select(OAuthApp).where(OAuthApp.vendor == spec.vendor))
            if create and app is not None:
                raise Conflict(f"an app for {spec.vendor} exists already; edit it")
            if not create and app is None:
                raise NotFound(f"no OAuth app for {spec.vendor}")
            if app is None:
                app = OAuthApp(vendor=spec.vendor)
                s.add(app)
            elif _moves_tokens(app, spec.issuer, token, revoke):
                # Users' refresh tokens go to the token and revocation endpoints: moving
                # those under existing connections would hand every user's grant to the
                # new place (a stolen administrator session would be enough).
                count = s.scalar(select(func.count()).where(OAuthConnection.app_id == app.id))
                if count:
                    raise Conflict(
                        f"{spec.vendor}: the issuer or token or revocation endpoint would "
                        f"change while {count} user(s) are connected; delete the app (their "
                        "grants are revoked where they were made) and add it again"
                    )
            app.display_name = spec.display_name or spec.vendor
            app.issuer = spec.issuer
            app.authorization_endpoint, app.token_endpoint = auth, token
            app.revocation_endpoint = revoke
            app.client_id, app.auth_method, app.pkce = spec.client_id, spec.auth_method, spec.pkce
            app.resource = spec.resource
            app.default_scopes = list(dict.fromkeys(spec.default_scopes))
            app.extra_params = dict(spec.extra_params)
            app.api_hosts = list(dict.fromkeys(canonical_pattern(h) for h in spec.api_hosts))
            app.updated_at = utcnow()
            s.flush()
            if spec.auth_method == "none":
                # A public client: a secret stored before has no use any more.
                store.drop_secrets(s, ("client_secret",), app.id)
            elif spec.client_secret is not None:
                store.put_secret(s, keyring, "client_secret", app.id, spec.client_secret)
            has = store.get_secret(s, keyring, "client_secret", app.id) is not None
            if spec.auth_method != "none" and not has:
                raise Invalid(f"{spec.auth_method} needs a client secret")
    except IntegrityError:
        raise Conflict(f"an app for {spec.vendor} exists already; edit it") from None
    return get_app(engine, actor, spec.vendor)


def _moves_tokens(app: OAuthApp, issuer: str | None, token: str, revoke: str | None) -> bool:
    def where(url: str | None) -> str | None:
        return origin_of(url) + urlsplit(url).path if url else None

    return (where(app.issuer), where(app.token_endpoint), where(app.revocation_endpoint)) != (
        where(issuer),
        where(token),
        where(revoke),
    )


def delete_app(engine: Engine, keyring: Keyring, http: Outbound, actor: Actor, vendor: str) -> int:
    """Remove an app with every user's connection to it: each connection's grant revoked
    at the vendor where it can be (best effort), every token deleted. Returns how many
    grants the vendor was told to revoke."""
    _admin(engine, actor, "remove OAuth apps")
    revoked = 0
    with Session(engine) as s:
        app = s.scalar(select(OAuthApp).where(OAuthApp.vendor == vendor))
        if app is None:
            raise NotFound(f"no OAuth app for {vendor}")
        owners = list(
            s.scalars(select(OAuthConnection.user_id).where(OAuthConnection.app_id == app.id))
        )
    for user_id in owners:
        st = store.load_state(engine, keyring, user_id, vendor)
        if st is not None and _revoke(st, http)[0]:
            revoked += 1
    with rows.change(engine, actor, "oauth.app.delete", detail=vendor) as s:
        app = s.scalar(select(OAuthApp).where(OAuthApp.vendor == vendor))
        if app is None:
            raise NotFound(f"no OAuth app for {vendor}")
        for conn_id in s.scalars(
            select(OAuthConnection.id).where(OAuthConnection.app_id == app.id)
        ):
            store.drop_secrets(s, ("access", "refresh"), conn_id)
        for pending_id in s.scalars(select(OAuthPending.id).where(OAuthPending.app_id == app.id)):
            store.drop_secrets(s, ("verifier",), pending_id)
        s.execute(delete(OAuthConnection).where(OAuthConnection.app_id == app.id))
        s.execute(delete(OAuthPending).where(OAuthPending.app_id == app.id))
        store.drop_secrets(s, ("client_secret",), app.id)
        s.delete(app)
    return revoked


def wanted_scopes(s: Session, app: OAuthApp, user_id: int | None = None) -> tuple[str, ...]:
    """The app's default scopes and every scope a server declares for its vendor, in
    order, once each: the servers in ``user_id``'s own profiles (what that user's
    connection is asked for: not what every other server would like), or every
    installed server (None: what an administrator is shown)."""
    out = list(app.default_scopes or [])
    query = select(Server.credentials)
    if user_id is not None:
        query = (
            query.join(ProfileServer, ProfileServer.server_id == Server.id)
            .join(Profile, Profile.id == ProfileServer.profile_id)
            .where(Profile.owner_id == user_id)
        )
    for creds in s.scalars(query):
        for c in creds or []:
            if c.get("type") == "oauth2" and c.get("vendor") == app.vendor:
                out.extend(x for x in c.get("scopes") or [] if isinstance(x, str))
    return tuple(dict.fromkeys(out))


def _info(s: Session, app: OAuthApp, admin: bool) -> AppInfo:
    count = (
        s.scalar(select(func.count()).where(OAuthConnection.app_id == app.id)) or 0
        if admin
        else None
    )
    has = s.scalar(
        select(func.count()).where(
            OAuthSecret.kind == "client_secret", OAuthSecret.ref_id == app.id
        )
    )
    return AppInfo(
        vendor=app.vendor, display_name=app.display_name, issuer=app.issuer,
        authorization_endpoint=app.authorization_endpoint, token_endpoint=app.token_endpoint,
        revocation_endpoint=app.revocation_endpoint, client_id=app.client_id,
        auth_method=app.auth_method, has_secret=bool(has), pkce=app.pkce,
        resource=app.resource, default_scopes=tuple(app.default_scopes or ()),
        extra_params=dict(app.extra_params or {}), api_hosts=tuple(app.api_hosts or ()),
        wanted_scopes=wanted_scopes(s, app),
        connections=count, updated_at=app.updated_at,
    )  # fmt: skip


def list_apps(engine: Engine, actor: Actor | None) -> list[AppInfo]:
    """Every app (every user may see which vendors can be connected and where the
    browser will be sent, never a secret; how many users connected, administrators
    only). ``actor`` None: the gateway itself (its client metadata document)."""
    with Session(engine) as s:
        apps = s.scalars(select(OAuthApp).order_by(OAuthApp.vendor))
        return [_info(s, a, actor is not None and actor.admin) for a in apps]


def get_app(engine: Engine, actor: Actor, vendor: str) -> AppInfo:
    with Session(engine) as s:
        app = s.scalar(select(OAuthApp).where(OAuthApp.vendor == vendor))
        if app is None:
            raise NotFound(f"no OAuth app for {vendor}")
        return _info(s, app, actor.admin)


# --- connections (every user) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    vendor: str
    display_name: str
    status: str  # connected | reconnect | not-connected
    wanted_scopes: tuple[str, ...]
    granted_scopes: tuple[str, ...]
    needs_consent: bool  # the servers now want scopes this connection was not asked for
    expires_at: datetime | None
    refreshed_at: datetime | None
    connected_at: datetime | None
    problem: str | None


def list_connections(engine: Engine, actor: Actor) -> list[ConnectionInfo]:
    """The acting user's connection (or its absence) to every app."""
    out = []
    with Session(engine) as s:
        mine = {
            c.app_id: c
            for c in s.scalars(
                select(OAuthConnection).where(OAuthConnection.user_id == actor.user_id)
            )
        }
        for app in s.scalars(select(OAuthApp).order_by(OAuthApp.vendor)):
            wanted = wanted_scopes(s, app, actor.user_id)
            c = mine.get(app.id)
            if c is None:
                out.append(ConnectionInfo(app.vendor, app.display_name, "not-connected", wanted,
                                          (), False, None, None, None, None))  # fmt: skip
                continue
            out.append(
                ConnectionInfo(
                    app.vendor,
                    app.display_name,
                    c.status,
                    wanted,
                    tuple(c.scopes_granted or ()),
                    not set(wanted) <= set(c.scopes_requested or ()),
                    store.aware(c.expires_at),
                    store.aware(c.refreshed_at),
                    store.aware(c.created_at),
                    c.problem,
                )
            )
    return out


def binding(session_id: int) -> str:
    """What ties an authorization in flight to the browser session that started it."""
    return hashlib.sha256(f"gigmcp/web-session/{session_id}".encode()).hexdigest()


def _state_hash(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8", "replace")).hexdigest()


def callback_url(public_origin: str, vendor: str) -> str:
    """The redirect URI registered at the vendor: one per vendor, so a code can only
    come back to the callback of the vendor it was asked of."""
    return f"{public_origin}/connections/{vendor}/callback"


def begin_connect(
    engine: Engine, keyring: Keyring, actor: Actor, vendor: str, session_binding: str,
    public_origin: str, return_to: str = "/connections",
) -> str:  # fmt: skip
    """Record an authorization in flight; the vendor's authorization URL to send the
    browser to."""
    rows.writable(actor)
    if actor.impersonating:
        raise Forbidden("connect accounts as yourself, not while viewing as another user")
    state = secrets.token_urlsafe(32)
    verifier, challenge = pkce_pair()
    with Session(engine) as s, s.begin():
        app = s.scalar(select(OAuthApp).where(OAuthApp.vendor == vendor))
        if app is None:
            raise NotFound(f"no OAuth app for {vendor}: an administrator configures one first")
        scopes = list(wanted_scopes(s, app, actor.user_id))
        _sweep(s)
        pending = OAuthPending(
            state_hash=_state_hash(state), user_id=actor.user_id, app_id=app.id,
            session_hash=session_binding, scopes=scopes, return_to=safe_return(return_to),
        )  # fmt: skip
        s.add(pending)
        s.flush()
        if app.pkce:
            store.put_secret(s, keyring, "verifier", pending.id, verifier.encode())
        config = store.app_config(s, keyring, app)
    client = VendorClient(config, Outbound())
    return client.authorize_url(
        state=state,
        challenge=challenge if config.pkce else None,
        scopes=scopes,
        redirect_uri=callback_url(public_origin, vendor),
    )


def _sweep(s: Session) -> None:
    old = list(
        s.scalars(
            select(OAuthPending.id).where(OAuthPending.created_at < utcnow() - PENDING_LIFETIME)
        )
    )
    for pid in old:
        store.drop_secrets(s, ("verifier",), pid)
    if old:
        s.execute(delete(OAuthPending).where(OAuthPending.id.in_(old)))


@dataclass(frozen=True, slots=True)
class Callback:
    """What the vendor sent back to the browser (query parameters)."""

    state: str | None
    code: str | None = field(default=None, repr=False)
    error: str | None = None
    iss: str | None = None


def finish_connect(
    engine: Engine, keyring: Keyring, http: Outbound, actor: Actor, vendor: str,
    back: Callback, session_binding: str, public_origin: str,
) -> str:  # fmt: skip
    """Complete the authorization whose ``state`` came back; where to send the browser."""
    rows.writable(actor)
    if not back.state or len(back.state) > 512:
        raise Unauthenticated("the vendor's answer carries no state: start again")
    with Session(engine) as s, s.begin():
        pending = s.scalar(
            select(OAuthPending).where(OAuthPending.state_hash == _state_hash(back.state))
        )
        if pending is None:
            raise Unauthenticated("this authorization is unknown or was used already: start again")
        # Single use: gone whatever happens next.
        verifier = store.get_secret(s, keyring, "verifier", pending.id)
        store.drop_secrets(s, ("verifier",), pending.id)
        s.delete(pending)
        app = s.get(OAuthApp, pending.app_id)
        checks = (
            pending.user_id == actor.user_id,
            hmac.compare_digest(pending.session_hash.encode(), session_binding.encode()),
        )
        created = store.aware(pending.created_at)
        fresh = created is not None and utcnow() - created <= PENDING_LIFETIME
        config = store.app_config(s, keyring, app) if app is not None else None
        scopes = list(pending.scopes or [])
        return_to = safe_return(pending.return_to)
        app_id = app.id if app is not None else None
    if not all(checks):
        raise Unauthenticated(
            "this authorization was started by another browser session: start again"
        )
    if config is None or app_id is None or config.vendor != vendor:
        raise Unauthenticated(
            "this answer came back to another vendor's callback than the one it was asked "
            "of: refused"
        )
    if not fresh:
        raise Unauthenticated("the authorization took too long: start again")
    if back.iss is not None and config.issuer is not None and back.iss != config.issuer:
        raise Unauthenticated(
            f"the answer names another issuer than {vendor}'s: refused (a mix-up)"
        )
    if back.error:
        cleaned = "".join(c for c in back.error[:64] if c.isalnum() or c in "_-.")
        raise Invalid(f"{vendor} did not grant access ({cleaned})")
    if not back.code or len(back.code) > 4096:
        raise Invalid(f"{vendor}'s answer carries no authorization code")
    client = VendorClient(config, http)
    redirect = callback_url(public_origin, vendor)
    try:
        tokens = asyncio.run(
            client.exchange(back.code, verifier.decode() if verifier else None, redirect)
        )
    except GrantRefused as exc:
        raise Invalid(
            f"{vendor} refused the authorization code ({exc.error}): start again"
        ) from None
    except (ServerUnavailable, OutboundRefused) as exc:
        raise Invalid(f"{vendor}: {exc}") from None
    if tokens.refresh_token is None:
        # Useless within the hour: refuse it, and tell the vendor to forget the token.
        with contextlib.suppress(ServerUnavailable, OutboundRefused):
            asyncio.run(client.revoke(tokens.access_token, "access_token"))
        raise Invalid(
            f"{vendor} gave no refresh token: the gateway needs offline access (ask for the "
            "vendor's offline scope, such as offline_access, or its access_type=offline "
            "parameter, in the app's settings)"
        )
    previous = store.load_state(engine, keyring, actor.user_id, vendor)
    now = utcnow()
    with rows.account(engine, actor, "oauth.connect", detail=vendor) as s:
        conn = s.scalar(
            select(OAuthConnection).where(
                OAuthConnection.user_id == actor.user_id, OAuthConnection.app_id == app_id
            )
        )
        if conn is None:
            conn = OAuthConnection(user_id=actor.user_id, app_id=app_id, generation=0, failures=0)
            s.add(conn)
        conn.status = store.CONNECTED
        conn.scopes_requested = scopes
        conn.scopes_granted = list(tokens.scope) if tokens.scope is not None else scopes
        conn.expires_at = now + timedelta(seconds=tokens.expires_in) if tokens.expires_in else None
        conn.generation = (conn.generation or 0) + 1
        conn.lease_until = conn.lease_holder = None
        conn.failures, conn.retry_at, conn.problem = 0, None, None
        conn.created_at, conn.refreshed_at = now, now
        s.flush()
        store.put_secret(s, keyring, "access", conn.id, tokens.access_token)
        store.put_secret(s, keyring, "refresh", conn.id, tokens.refresh_token)
    if previous is not None and previous.refresh not in (None, tokens.refresh_token):
        # Connected again: the grant it replaces is ended at the vendor (best effort),
        # not left alive and forgotten.
        _revoke(previous, http)
    return return_to


def _revoke(st: store.ConnectionState, http: Outbound) -> tuple[bool, str | None]:
    """Tell the vendor (RFC 7009): the refresh token first (its revocation ends the
    grant), then the access token where the vendor revokes those. (revoked, problem)."""
    vendor = st.app.vendor
    if not st.app.revocation_endpoint:
        return (
            False,
            f"{vendor} has no revocation endpoint: revoke the grant in the vendor's settings",
        )
    client = VendorClient(st.app, http)
    revoked = False
    try:
        for token, hint in ((st.refresh, "refresh_token"), (st.access, "access_token")):
            if token is not None:
                revoked = asyncio.run(client.revoke(token, hint)) or revoked
    except (ServerUnavailable, OutboundRefused) as exc:
        return revoked, str(exc)
    return revoked, None


@dataclass(frozen=True, slots=True)
class Disconnected:
    vendor: str
    revoked: bool  # the vendor was told (RFC 7009)
    problem: str | None  # why it could not be, when it could not


def disconnect(
    engine: Engine, keyring: Keyring, http: Outbound, actor: Actor, vendor: str
) -> Disconnected:
    """Revoke the connection at the vendor where it can be, and delete its tokens (even
    when the vendor cannot be told: the gateway forgets them either way)."""
    rows.writable(actor)
    st = store.load_state(engine, keyring, actor.user_id, vendor)
    if st is None:
        raise NotFound(f"no {vendor} account is connected")
    revoked, problem = _revoke(st, http)
    with rows.account(engine, actor, "oauth.disconnect", detail=vendor) as s:
        store.drop_secrets(s, ("access", "refresh"), st.id)
        s.execute(delete(OAuthConnection).where(OAuthConnection.id == st.id))
    return Disconnected(vendor, revoked, problem)
