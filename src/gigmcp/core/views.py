"""Read model of the store as the gateway's hot path sees it: immutable snapshots, and
the :class:`Catalog` protocol the store implements.

The router, the supervisor, the credential provider and the endpoint depend only on
these types and on :class:`Catalog`; they never touch SQLAlchemy sessions. A snapshot
never holds a secret value: tokens appear only as their hashes. Nothing here reads the
store: ``store/catalog.py`` builds the snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from gigmcp.core.definitions import CredentialDef, Egress
from gigmcp.core.pins import PinBook


@dataclass(frozen=True, slots=True)
class ServerDef:
    """How to start one MCP server (stdio). ``env`` holds literal, non-secret values;
    ``env_names`` are declared variables whose values a credential provider supplies."""

    id: int
    name: str
    owner_id: int
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    env_names: tuple[str, ...] = ()
    cwd: str | None = None
    # Sandbox limits the operator set (see store/limits.py); unset ones take defaults.
    limits: tuple[tuple[str, int], ...] = ()
    egress: Egress = field(default_factory=Egress)
    credentials: tuple[CredentialDef, ...] = ()
    # An installed OCI image: its extracted root, the jail's / (command resolved inside).
    rootfs: str | None = None
    # The values the owner of the profile this definition is assigned in has set, as
    # (credential id, record id): never a value, but every set, replace or unset gives a
    # new record id (a re-wrap under a new master key does not), so a changed value
    # changes the definition and, with it, the grant of running instances.
    credential_values: tuple[tuple[str, str], ...] = ()
    # A remote server (Streamable HTTP at this URL): no command, a session instead.
    remote_url: str | None = None

    def grant(self) -> tuple[object, ...]:
        """What an instance's egress grant is compiled from at launch: the allowlist,
        the declared credentials and which values are set. Running instances whose grant
        differs from their server's current one are stopped at once (router/gateway.py)."""
        return (self.egress, self.credentials, self.credential_values, self.remote_url)


@dataclass(frozen=True, slots=True)
class Assignment:
    """A server assigned to a profile, with its tool selection.

    A tool is enabled when ``tool_overrides`` says so, else when ``default_enabled``.
    """

    server: ServerDef
    default_enabled: bool = True
    tool_overrides: tuple[tuple[str, bool], ...] = ()

    def tool_enabled(self, tool: str) -> bool:
        for name, enabled in self.tool_overrides:
            if name == tool:
                return enabled
        return self.default_enabled


@dataclass(frozen=True, slots=True)
class ProfileView:
    id: int
    slug: str
    owner_id: int
    assignments: tuple[Assignment, ...] = field(default=())

    def assignment(self, server_name: str) -> Assignment | None:
        for a in self.assignments:
            if a.server.name == server_name:
                return a
        return None


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """What a valid profile token opens: exactly one profile."""

    token_id: int
    profile_id: int
    profile_slug: str
    user_id: int
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit row. Never carries argument values or secrets, only sizes and names."""

    action: str
    outcome: str
    user_id: int | None = None
    profile_id: int | None = None
    server: str | None = None
    tool: str | None = None
    duration_ms: float | None = None
    arg_bytes: int | None = None
    detail: str | None = None
    # When it happened, not when the batch holding it reached the database.
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


class Catalog(Protocol):
    """The gateway's view of the store. Implementations must make ``revision`` cheap
    (called per request) and every lookup non-blocking in practice (served from memory,
    reloaded when ``revision`` moves)."""

    @property
    def pins(self) -> PinBook | None:
        """The tool pins the hubs screen listings against; None where nothing is pinned
        (a catalog with no store behind it)."""
        ...

    def revision(self) -> int: ...

    def refresh(self) -> int:
        """Reload the snapshot if the revision moved; return the current revision."""
        ...

    def authenticate(self, token: str) -> TokenGrant | None:
        """Return the grant for a presented token, or None when unknown, revoked or expired.
        Compares hashes in constant time."""
        ...

    def live_token_ids(self) -> frozenset[int]:
        """Ids of the tokens valid now (not revoked, not expired): what the endpoint
        checks its open sessions and streams against."""
        ...

    def profile(self, profile_id: int) -> ProfileView | None: ...

    def profile_by_slug(self, slug: str) -> ProfileView | None: ...

    def record(self, event: AuditEvent) -> None:
        """Queue an audit row; must not block the event loop."""
        ...
