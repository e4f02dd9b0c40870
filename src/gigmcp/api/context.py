"""What the API is given by the one place that wires the gateway (app.py): the store,
session lifetimes, the public origin, whether cookies are Secure, and whether the
one-time sign-in link of the embedded default is on; and where the instances' status
comes from. Plain values; no behaviour."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from gigmcp.api.ratelimit import API_PER_ADDRESS, API_PER_USER, Rate
from gigmcp.control.users import RolePolicy
from gigmcp.control.websessions import Lifetimes
from gigmcp.core.instances import InstanceView
from gigmcp.installer.index_fetch import RegistrySource
from gigmcp.installer.materialize import Target
from gigmcp.oauthclient.outbound import Outbound
from gigmcp.oidc.provider import Provider
from gigmcp.sandbox.doctor import Check
from gigmcp.vault.keys import Keyring


@dataclass(frozen=True, slots=True)
class ApiConfig:
    engine: Engine
    # scheme://host[:port] the browser sees: Origin checks and redirects use it.
    public_origin: str
    secure_cookies: bool
    lifetimes: Lifetimes = field(default_factory=Lifetimes)
    # The embedded default: no identity provider, loopback only.
    login_links: bool = False
    max_body_bytes: int = 1024 * 1024
    # Sign-in with an identity provider: the provider, the key that seals a sign-in's
    # state in its cookie (from the vault, so every replica opens it), and the roles.
    oidc: Provider | None = None
    flow_key: bytes = b""
    roles_claim: str | None = None
    roles: RolePolicy = field(default_factory=RolePolicy)
    # Reverse proxies whose X-Forwarded-For names the client (rate limits key on it).
    trusted_proxies: tuple[str, ...] = ()
    impersonation: bool = False
    # The vault's keys (credential values are sealed with them) and the instance logs.
    keyring: Keyring | None = None
    logs_dir: Path | None = None
    # The signed registry and where installs land; None when not configured.
    registry: RegistrySource | None = None
    install_target: Target | None = None
    # Calls per user (tests make it small; see api/ratelimit.py for the default).
    user_rate: Rate = API_PER_USER
    address_rate: Rate = API_PER_ADDRESS
    # The supervisor's status snapshot (Supervisor.status; callable from a worker
    # thread); None where no supervisor runs (the API alone, in tests): no instances.
    instances: Callable[[], Sequence[InstanceView]] | None = None
    # What the host checks (``gigmcp doctor``) found, re-run now and then; None when the
    # servers are not jailed here (administrators' overview).
    host_checks: Callable[[], Sequence[Check]] | None = None
    # The gateway's own requests to vendors' authorization servers (connected accounts),
    # through the SSRF guard; None: the system resolver and trust store.
    outbound: Outbound | None = None

    @property
    def cookie_name(self) -> str:
        # __Host-: never set by a subdomain, never for another path; needs Secure.
        return "__Host-gig_session" if self.secure_cookies else "gig_session"

    @property
    def csrf_cookie_name(self) -> str:
        return "__Host-gig_csrf" if self.secure_cookies else "gig_csrf"
