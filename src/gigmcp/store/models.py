"""The schema: SQLAlchemy 2 typed models. Portable (SQLite and PostgreSQL), nothing else.

Every row that belongs to someone carries ``owner_id``. Tokens are stored only as hashes;
no column here ever holds a secret in clear.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    issuer: Mapped[str] = mapped_column(String(512))
    subject: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # As the identity provider showed them at the last sign-in; never an identity.
    name: Mapped[str | None] = mapped_column(String(255))
    last_sign_in_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Profile(Base):
    __tablename__ = "profiles"
    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Server(Base):
    __tablename__ = "servers"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    command: Mapped[list[str]] = mapped_column(JSON)
    env: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    env_names: Mapped[list[str]] = mapped_column(JSON, default=list)
    cwd: Mapped[str | None] = mapped_column(String(4096))
    limits: Mapped[dict[str, int]] = mapped_column(JSON, default=dict, server_default="{}")
    # Where the server may go, and the credentials it uses (core/definitions.py).
    egress: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    credentials: Mapped[list[dict[str, Any]]] = mapped_column(
        JSON, default=list, server_default="[]"
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Registry installs (None for servers added by command): kind, ref, the manifest and
    # its hashes, where the package lives. The runtime hash the owner consented to; an
    # upgrade whose runtime hash differs waits in ``pending`` until consented.
    origin: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    consented_runtime_hash: Mapped[str | None] = mapped_column(String(64))
    pending: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class ToolPin(Base):
    """What a tool looked like when first seen after consent (name, description, input
    schema), and a changed version awaiting approval; a flagged tool is hidden."""

    __tablename__ = "tool_pins"
    __table_args__ = (UniqueConstraint("server_id", "tool"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    server_id: Mapped[int] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"), index=True)
    tool: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    flagged_fingerprint: Mapped[str | None] = mapped_column(String(64))
    flagged_snapshot: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    pinned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    flagged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RegistryState(Base):
    """One row: the ``generated`` time and hash of the registry index last accepted, so
    an older index (a rollback) is refused."""

    __tablename__ = "registry_state"
    id: Mapped[int] = mapped_column(primary_key=True)
    generated: Mapped[str] = mapped_column(String(64))
    index_sha256: Mapped[str] = mapped_column(String(64))
    accepted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CredentialValue(Base):
    """One credential value, set per owner and server: only ever as vault ciphertext.

    ``record_id`` is random and part of the ciphertext's associated data together with
    the owner, server and credential id, so a ciphertext copied to another row does not
    open. ``key_id`` repeats the master key id from the ciphertext's header so that a
    rotation can find what is left to re-wrap."""

    __tablename__ = "credential_values"
    __table_args__ = (UniqueConstraint("owner_id", "server_id", "credential_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    record_id: Mapped[str] = mapped_column(String(32), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    server_id: Mapped[int] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"), index=True)
    credential_id: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(16), index=True)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class VaultItem(Base):
    """A secret of the gateway itself (the egress CA's private key), as vault ciphertext."""

    __tablename__ = "vault_items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    key_id: Mapped[str] = mapped_column(String(16), index=True)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EgressAuditRow(Base):
    """One request (or refused connection) through the egress proxy. Never a value:
    the path has no query string, and a credential appears by its id only."""

    __tablename__ = "egress_audit"
    __table_args__ = (
        # The sealer's scan: the rows not chained yet, oldest first.
        Index(
            "ix_egress_audit_unsealed",
            "id",
            sqlite_where=text("seq IS NULL"),
            postgresql_where=text("seq IS NULL"),
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    owner_id: Mapped[int | None] = mapped_column(Integer, index=True)
    profile_id: Mapped[int | None] = mapped_column(Integer)
    server: Mapped[str | None] = mapped_column(String(63))
    instance: Mapped[str | None] = mapped_column(String(128))
    source_ip: Mapped[str] = mapped_column(String(45))
    method: Mapped[str | None] = mapped_column(String(16))
    scheme: Mapped[str | None] = mapped_column(String(8))
    host: Mapped[str | None] = mapped_column(String(255))
    port: Mapped[int | None] = mapped_column(Integer)
    path: Mapped[str | None] = mapped_column(String(1024))
    status: Mapped[int | None] = mapped_column(Integer)
    bytes_out: Mapped[int] = mapped_column(Integer, default=0)  # sandbox → upstream body
    bytes_in: Mapped[int] = mapped_column(Integer, default=0)  # upstream → sandbox body
    duration_ms: Mapped[float | None] = mapped_column(Float)
    decision: Mapped[str] = mapped_column(String(16))  # allowed | denied | error
    reason: Mapped[str] = mapped_column(String(64))
    credential: Mapped[str | None] = mapped_column(String(64))
    # How many events this row stands for: 1 for a request; the sandbox resolver folds
    # the queries it refuses or rate-limits into one row per instance and interval.
    count: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # The hash chain (store/audit_chain.py): set by the sealer, NULL until then.
    seq: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    row_hash: Mapped[str | None] = mapped_column(String(64))


class ProfileServer(Base):
    __tablename__ = "profile_servers"
    __table_args__ = (UniqueConstraint("profile_id", "server_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    profile_id: Mapped[int] = mapped_column(
        ForeignKey("profiles.id", ondelete="CASCADE"), index=True
    )
    server_id: Mapped[int] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"), index=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    default_enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class ProfileTool(Base):
    __tablename__ = "profile_tools"
    __table_args__ = (UniqueConstraint("assignment_id", "tool"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(
        ForeignKey("profile_servers.id", ondelete="CASCADE"), index=True
    )
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    tool: Mapped[str] = mapped_column(String(255))
    enabled: Mapped[bool] = mapped_column(Boolean)


class ProfileToken(Base):
    __tablename__ = "profile_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    display: Mapped[str] = mapped_column(String(32))
    profile_id: Mapped[int] = mapped_column(
        ForeignKey("profiles.id", ondelete="CASCADE"), index=True
    )
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditRow(Base):
    __tablename__ = "audit_events"
    # Keyset pages, newest first: each page is one index range scan, however many rows
    # the table holds, for everyone, for one user, and for the filters the audit page
    # offers: a profile (one user's), a server (everyone's or one user's), a kind. Each
    # index ends in (at, id), the page's order. Other combinations read the nearest
    # index's range and filter it. The prune (at < …) uses the first.
    __table_args__ = (
        Index("ix_audit_events_at_id", "at", "id"),
        Index("ix_audit_events_user_at_id", "user_id", "at", "id"),
        Index("ix_audit_events_profile_at_id", "profile_id", "at", "id"),
        Index("ix_audit_events_server_at_id", "server", "at", "id"),
        Index("ix_audit_events_user_server_at_id", "user_id", "server", "at", "id"),
        Index("ix_audit_events_action_at_id", "action", "at", "id"),
        # The sealer's scan: the rows not chained yet, oldest first.
        Index(
            "ix_audit_events_unsealed",
            "id",
            sqlite_where=text("seq IS NULL"),
            postgresql_where=text("seq IS NULL"),
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    action: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[int | None] = mapped_column(Integer)
    profile_id: Mapped[int | None] = mapped_column(Integer)
    server: Mapped[str | None] = mapped_column(String(63))
    tool: Mapped[str | None] = mapped_column(String(255))
    duration_ms: Mapped[float | None] = mapped_column(Float)
    arg_bytes: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(String(1024))
    # Set when an administrator acted while viewing the gateway as ``user_id``.
    real_user_id: Mapped[int | None] = mapped_column(Integer)
    # The hash chain (store/audit_chain.py): set by the sealer, NULL until then.
    seq: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    row_hash: Mapped[str | None] = mapped_column(String(64))


class AuditChainHead(Base):
    """Where each chain (``events``: audit_events; ``egress``: egress_audit) ends: the
    last sealed position and hash. Sealers take its row's lock, so one seals at a time
    across replicas."""

    __tablename__ = "audit_chain_heads"
    stream: Mapped[str] = mapped_column(String(16), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    row_hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpoint(Base):
    """A signed statement that a chain's row ``seq`` had hash ``row_hash`` at ``at``
    (Ed25519, the key sealed in the vault). Never deleted: retention keeps the chain
    verifiable from the newest checkpoint before what it deleted."""

    __tablename__ = "audit_checkpoints"
    __table_args__ = (UniqueConstraint("stream", "seq"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    stream: Mapped[str] = mapped_column(String(16))
    seq: Mapped[int] = mapped_column(BigInteger)
    row_hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    public_key: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(128))


class CallCount(Base):
    """Tool calls and errors rolled up per grain, scope, period, server and tool, kept in
    step by store/activity.py as audit rows are written. ``scope`` is the acting user's
    id, or 0 for the whole gateway; ``server``/``tool`` are '' where the grain does not
    split by them (a primary key column cannot be NULL)."""

    __tablename__ = "call_counts"
    # Every overview query fixes scope and grain and reads a range of periods.
    scope: Mapped[int] = mapped_column(Integer, primary_key=True)
    grain: Mapped[str] = mapped_column(String(1), primary_key=True)  # d | w | m
    start: Mapped[date] = mapped_column(Date, primary_key=True)  # the period's first day
    server: Mapped[str] = mapped_column(String(63), primary_key=True)
    tool: Mapped[str] = mapped_column(String(255), primary_key=True)
    calls: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer)


class EgressCount(Base):
    """Egress requests per scope (the owner, or 0 for everyone), UTC day and decision."""

    __tablename__ = "egress_counts"
    scope: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    decision: Mapped[str] = mapped_column(String(16), primary_key=True)
    requests: Mapped[int] = mapped_column(Integer)


class WebSession(Base):
    """A signed-in browser. The cookie holds the token; only its hash is here, and so is
    the hash of the session's CSRF token. Writes here never bump the configuration
    revision: the MCP endpoints do not care who is signed in."""

    __tablename__ = "web_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_hash: Mapped[str] = mapped_column(String(64))
    as_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    as_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    client: Mapped[str | None] = mapped_column(String(255))


class ApiToken(Base):
    """A personal API token for scripts: read or write, hashed, revocable."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    display: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    scope: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LoginLink(Base):
    """A one-time sign-in link for the local administrator of a gateway without an
    identity provider: single use, minutes long."""

    __tablename__ = "login_links"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OAuthApp(Base):
    """An administrator's OAuth app at one vendor (an authorization server): where its
    endpoints are, the client it is registered as, what every connection asks for. The
    client secret is not here: it is an ``oauth_secrets`` row (kind ``client_secret``)."""

    __tablename__ = "oauth_apps"
    id: Mapped[int] = mapped_column(primary_key=True)
    vendor: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(255))
    issuer: Mapped[str | None] = mapped_column(String(2048))
    authorization_endpoint: Mapped[str] = mapped_column(String(2048))
    token_endpoint: Mapped[str] = mapped_column(String(2048))
    revocation_endpoint: Mapped[str | None] = mapped_column(String(2048))
    client_id: Mapped[str] = mapped_column(String(512))
    # client_secret_basic | client_secret_post | none (a public client: PKCE only)
    auth_method: Mapped[str] = mapped_column(String(32))
    pkce: Mapped[bool] = mapped_column(Boolean, default=True)
    # RFC 8707: sent in the authorization request, the code exchange and every refresh.
    resource: Mapped[str | None] = mapped_column(String(2048))
    default_scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    extra_params: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # The vendor's API hosts (canonical patterns): a connected account's token goes only
    # toward hosts that are both a credential's and these.
    api_hosts: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class OAuthConnection(Base):
    """A user's connected account at a vendor. The tokens are ``oauth_secrets`` rows
    (kinds ``access`` and ``refresh``); here is what may be shown and what coordinates a
    refresh between replicas: ``lease_until`` is the database lock one refresher holds
    (taken by a conditional update, so exactly one replica wins), ``generation`` counts
    token writes so that a cached token can tell it is stale."""

    __tablename__ = "oauth_connections"
    __table_args__ = (UniqueConstraint("user_id", "app_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("oauth_apps.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))  # connected | reconnect
    scopes_requested: Mapped[list[str]] = mapped_column(JSON, default=list)
    scopes_granted: Mapped[list[str]] = mapped_column(JSON, default=list)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    generation: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_holder: Mapped[str | None] = mapped_column(String(32))
    failures: Mapped[int] = mapped_column(Integer, default=0)
    retry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    problem: Mapped[str | None] = mapped_column(String(512))  # never a token
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    refreshed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OAuthPending(Base):
    """One authorization in flight: the hash of its ``state`` (single use: the callback
    deletes the row it consumes), the user and browser session it was started from, the
    app it is for. The PKCE verifier is an ``oauth_secrets`` row (kind ``verifier``)."""

    __tablename__ = "oauth_pending"
    id: Mapped[int] = mapped_column(primary_key=True)
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("oauth_apps.id", ondelete="CASCADE"))
    session_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    return_to: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class OAuthSecret(Base):
    """Sealed OAuth material, as vault ciphertext: an app's client secret, a
    connection's access and refresh tokens, a pending authorization's PKCE verifier.
    ``kind`` and ``ref_id`` (the app, connection or pending row) and the random
    ``record_id`` are the ciphertext's associated data, so it opens in its own row only."""

    __tablename__ = "oauth_secrets"
    __table_args__ = (UniqueConstraint("kind", "ref_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    record_id: Mapped[str] = mapped_column(String(32), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    ref_id: Mapped[int] = mapped_column(Integer)
    key_id: Mapped[str] = mapped_column(String(16), index=True)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class BackgroundJob(Base):
    """One periodic job that must run once across replicas (store/jobs.py): when it was
    last started and finished, who holds it and until when (a lease judged by the
    database's clock), when it is next due, and how many runs in a row failed (the
    backoff is shared by every replica)."""

    __tablename__ = "background_jobs"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_started: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_finished: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    holder: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ConfigRevision(Base):
    """One row; bumped in the same transaction as every change the gateway must see."""

    __tablename__ = "config_revision"
    id: Mapped[int] = mapped_column(primary_key=True)
    rev: Mapped[int] = mapped_column(Integer, default=0)


def row_dict(obj: Any) -> dict[str, Any]:
    return {c.key: getattr(obj, c.key) for c in obj.__table__.columns}
