"""Connected accounts at rest: the sealed OAuth material, a connection's state as the
token broker reads it, and the database lock that lets exactly one refresher at a time
(across replicas) spend a refresh token.

Sealed material is one ``oauth_secrets`` row per (kind, owning row): ``client_secret``
of an app, ``access`` and ``refresh`` of a connection, ``verifier`` of a pending
authorization, each a vault ciphertext whose associated data names its row
(``secrets.oauth_aad``), so a ciphertext moved to another row does not open.

The refresh lock is a lease on the connection row: :func:`claim` sets ``lease_until``
and ``lease_holder`` by a conditional UPDATE that only matches a row whose lease is free
or lapsed, so of any number of replicas exactly one gets a row count of one. The holder
writes the new tokens and clears the lease in one transaction that checks it still holds
it (:func:`save_tokens`); a holder that died lets the lease lapse after its time. Nobody
holds a database transaction open across the network call.

Owns these rows' reads and writes. It must never write a token or secret in clear,
return a value it could not authenticate, or let a writer that lost its lease overwrite
tokens.
"""

from __future__ import annotations

import secrets as pysecrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, and_, delete, or_, select, update
from sqlalchemy.orm import Session

from gigmcp.oauthclient.client import AppConfig, TokenSet
from gigmcp.store.db import clock
from gigmcp.store.models import OAuthApp, OAuthConnection, OAuthSecret, utcnow
from gigmcp.store.secrets import oauth_aad
from gigmcp.vault import envelope
from gigmcp.vault.keys import Keyring

KINDS = ("client_secret", "access", "refresh", "verifier")
ASSUMED_LIFETIME_S = 3600
MAX_SCOPES = 64
CONNECTED, RECONNECT = "connected", "reconnect"


def put_secret(s: Session, keyring: Keyring, kind: str, ref_id: int, value: bytes) -> None:
    """Seal ``value`` as the ``kind`` secret of row ``ref_id`` (replacing one, with a new
    record id so that an old ciphertext cannot be put back)."""
    assert kind in KINDS
    record_id = pysecrets.token_hex(16)
    blob = envelope.seal(keyring.current, value, oauth_aad(record_id, kind, ref_id))
    row = s.scalar(
        select(OAuthSecret).where(OAuthSecret.kind == kind, OAuthSecret.ref_id == ref_id)
    )
    if row is None:
        s.add(OAuthSecret(record_id=record_id, kind=kind, ref_id=ref_id,
                          key_id=keyring.current.key_id_hex, ciphertext=blob))  # fmt: skip
    else:
        row.record_id, row.key_id, row.ciphertext = record_id, keyring.current.key_id_hex, blob


def get_secret(s: Session, keyring: Keyring, kind: str, ref_id: int) -> bytes | None:
    row = s.scalar(
        select(OAuthSecret).where(OAuthSecret.kind == kind, OAuthSecret.ref_id == ref_id)
    )
    if row is None:
        return None
    return envelope.open_(keyring, row.ciphertext, oauth_aad(row.record_id, kind, ref_id))


def drop_secrets(s: Session, kinds: tuple[str, ...], ref_id: int) -> None:
    s.execute(delete(OAuthSecret).where(OAuthSecret.kind.in_(kinds), OAuthSecret.ref_id == ref_id))


def app_config(s: Session, keyring: Keyring, app: OAuthApp) -> AppConfig:
    return AppConfig(
        vendor=app.vendor,
        client_id=app.client_id,
        authorization_endpoint=app.authorization_endpoint,
        token_endpoint=app.token_endpoint,
        revocation_endpoint=app.revocation_endpoint,
        client_secret=get_secret(s, keyring, "client_secret", app.id),
        auth_method=app.auth_method,
        pkce=app.pkce,
        resource=app.resource,
        issuer=app.issuer,
        extra_params=dict(app.extra_params or {}),
    )


@dataclass(frozen=True, slots=True)
class ConnectionState:
    """A connection as the broker needs it, tokens opened."""

    id: int
    user_id: int
    app: AppConfig
    status: str
    access: bytes | None = field(repr=False)
    refresh: bytes | None = field(repr=False)
    expires_at: datetime | None
    generation: int
    retry_at: datetime | None
    failures: int
    lease_until: datetime | None
    refreshed_at: datetime | None = None


def aware(t: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes for timezone-aware columns: they were UTC."""
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t


def load_state(
    engine: Engine, keyring: Keyring, user_id: int, vendor: str
) -> ConnectionState | None:
    with Session(engine) as s:
        found = s.execute(
            select(OAuthConnection, OAuthApp)
            .join(OAuthApp, OAuthApp.id == OAuthConnection.app_id)
            .where(OAuthConnection.user_id == user_id, OAuthApp.vendor == vendor)
        ).first()
        if found is None:
            return None
        conn, app = found
        return ConnectionState(
            id=conn.id,
            user_id=conn.user_id,
            app=app_config(s, keyring, app),
            status=conn.status,
            access=get_secret(s, keyring, "access", conn.id),
            refresh=get_secret(s, keyring, "refresh", conn.id),
            expires_at=aware(conn.expires_at),
            generation=conn.generation,
            retry_at=aware(conn.retry_at),
            failures=conn.failures,
            lease_until=aware(conn.lease_until),
            refreshed_at=aware(conn.refreshed_at),
        )


def api_hosts(engine: Engine, vendor: str) -> tuple[str, ...]:
    """The API hosts of ``vendor``'s app (none: no app, or none listed)."""
    with Session(engine) as s:
        found = s.scalar(select(OAuthApp.api_hosts).where(OAuthApp.vendor == vendor))
        return tuple(found or ())


def generation(engine: Engine, conn_id: int) -> tuple[int, str] | None:
    """(generation, status) of a connection: the cheap check that a cached token is
    still the connection's current one."""
    with Session(engine) as s:
        row = s.execute(
            select(OAuthConnection.generation, OAuthConnection.status).where(
                OAuthConnection.id == conn_id
            )
        ).first()
        return None if row is None else (row[0], row[1])


def expire(engine: Engine, conn_id: int, generation: int) -> None:
    """Mark the connection's access token as expired, if it is still the one of
    ``generation`` (a refresh since then wrote a newer one, which stays)."""
    with Session(engine) as s, s.begin():
        s.execute(
            update(OAuthConnection)
            .where(OAuthConnection.id == conn_id, OAuthConnection.generation == generation)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )


def claim(engine: Engine, conn_id: int, holder: str, ttl: timedelta) -> bool:
    """Take the refresh lease of a connection; True for exactly one claimant while the
    lease is held."""
    now = clock(engine)
    with Session(engine) as s, s.begin():
        result = s.execute(
            update(OAuthConnection)
            .where(
                OAuthConnection.id == conn_id,
                OAuthConnection.status == CONNECTED,
                or_(OAuthConnection.lease_until.is_(None), OAuthConnection.lease_until < now),
            )
            .values(lease_until=now + ttl, lease_holder=holder)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def _held(conn_id: int, holder: str):  # type: ignore[no-untyped-def]
    return and_(OAuthConnection.id == conn_id, OAuthConnection.lease_holder == holder)


def save_tokens(
    engine: Engine,
    keyring: Keyring,
    conn_id: int,
    holder: str,
    generation: int,
    tokens: TokenSet,
) -> str:
    """Store refreshed tokens and free the lease: ``saved``. Also when the lease lapsed
    but nobody wrote tokens since ``generation`` (the rotated refresh token is the only
    live one: losing it would lose the grant). ``lost``: another holder wrote newer ones;
    ``gone``: the connection was removed meanwhile (disconnected). A refresh answer
    without a refresh token keeps the old one (no rotation)."""
    now = utcnow()
    with Session(engine) as s, s.begin():
        conn = s.scalar(
            select(OAuthConnection).where(OAuthConnection.id == conn_id).with_for_update()
        )
        if conn is None:
            return "gone"
        if conn.lease_holder != holder and conn.generation != generation:
            return "lost"
        put_secret(s, keyring, "access", conn.id, tokens.access_token)
        if tokens.refresh_token is not None:
            put_secret(s, keyring, "refresh", conn.id, tokens.refresh_token)
        conn.expires_at = expiry(now, tokens)
        if tokens.scope is not None:
            conn.scopes_granted = list(tokens.scope)[:MAX_SCOPES]
        conn.generation += 1
        conn.lease_until = conn.lease_holder = None
        conn.failures, conn.retry_at, conn.problem = 0, None, None
        conn.refreshed_at = now
        return "saved"


def expiry(now: datetime, tokens: TokenSet) -> datetime:
    """When an access token expires; one whose server did not say is taken to live an
    hour (the usual), so that it is refreshed rather than used forever."""
    return now + timedelta(seconds=tokens.expires_in or ASSUMED_LIFETIME_S)


def record_failure(
    engine: Engine, conn_id: int, holder: str, *, permanent: bool, problem: str, retry_in: float
) -> None:
    """A refresh that failed: free the lease; a permanent failure (``invalid_grant``)
    marks the connection for reconnection, a transient one sets when to try again."""
    with Session(engine) as s, s.begin():
        conn = s.scalar(select(OAuthConnection).where(_held(conn_id, holder)).with_for_update())
        if conn is None:
            return
        conn.lease_until = conn.lease_holder = None
        conn.problem = problem[:512]
        if permanent:
            conn.status = RECONNECT
            conn.generation += 1
            drop_secrets(s, ("access",), conn.id)
        else:
            conn.failures += 1
            conn.retry_at = utcnow() + timedelta(seconds=retry_in)
