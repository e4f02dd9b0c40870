"""Assembles one gateway process: store catalog, router, supervisor, MCP endpoint, and
— when servers run jailed — the vault, the egress CA, the credential provider and the
egress proxy.

Owns all of the gateway's wiring: which part is handed which, the hooks between them,
whom an instance acts for (:meth:`Gateway.owner_of`, the one rule every part asks),
and start-up and shutdown order (children are terminated before the store closes, so
their last audit rows are written). It must never start serving before the store is
migrated, never leave a child process behind on shutdown, and never let an instance
act for anyone but its profile's owner.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from gigmcp import errors
from gigmcp.api.context import ApiConfig
from gigmcp.config import ConfigError, Settings, master_keys
from gigmcp.control import installs
from gigmcp.control.index_refresh import IndexRefresher
from gigmcp.control.users import RolePolicy
from gigmcp.core.asgi import ASGIApp, Receive, Scope, Send
from gigmcp.core.instances import InstanceKey, InstanceView
from gigmcp.core.launch import JailLimits, Launcher, LaunchSpec, RemoteTarget
from gigmcp.core.server_info import GATEWAY_INFO
from gigmcp.core.views import ServerDef
from gigmcp.credentials.oauth_broker import TokenBroker
from gigmcp.credentials.provider import CredentialProvider, NoCredentials, launch_environment
from gigmcp.credentials.vault_provider import VaultCredentials
from gigmcp.egress import authority
from gigmcp.egress.certs import CertificateAuthority, LeafCache, upstream_context
from gigmcp.egress.listeners import ProxyPorts
from gigmcp.egress.observed import ObservedAudit
from gigmcp.egress.proxy import EgressProxy
from gigmcp.egress.remote import RemoteLauncher
from gigmcp.endpoint.asgi import McpEndpoint
from gigmcp.endpoint.relay import Relay
from gigmcp.endpoint.sessions import SessionStore
from gigmcp.errors import LaunchError, VaultError
from gigmcp.netpolicy.hostaddr import HostAddresses
from gigmcp.netpolicy.policy import PortRules
from gigmcp.netpolicy.resolver import DnsResolver, Resolver, SystemResolver
from gigmcp.oauthclient.outbound import Outbound
from gigmcp.oidc.flow import KEY_BYTES as flow_key_bytes
from gigmcp.oidc.provider import SCOPES, ClientConfig, Provider
from gigmcp.router.gateway import Router
from gigmcp.router.handles import derive
from gigmcp.sandbox.doctor import Check
from gigmcp.store import secrets as vault_store
from gigmcp.store.audit_sealer import AuditSealer
from gigmcp.store.bus import CONFIG_CHANNEL, Bus
from gigmcp.store.bus import conninfo as bus_conninfo
from gigmcp.store.catalog import StoreCatalog
from gigmcp.store.db import make_engine, migrate
from gigmcp.supervisor.launcher import PlainLauncher
from gigmcp.supervisor.supervisor import Supervisor
from gigmcp.telemetry import metrics, tracing
from gigmcp.telemetry.metrics import MetricsListener
from gigmcp.upstream.connection import WireLimits
from gigmcp.vault.keys import Keyring, MasterKey
from gigmcp.web.app import build_control_plane, disabled_control_plane

log = logging.getLogger(__name__)


def _keyring_or_none(settings: Settings) -> Keyring | None:
    """The vault's keys for the audit checkpoints; None (chains sealed, not signed,
    said in the log) on a gateway whose master key is not set up."""
    try:
        current, previous = master_keys(settings)
    except ConfigError as err:
        log.warning("audit checkpoints are not signed: %s", err)
        return None
    return Keyring(MasterKey(current), [MasterKey(previous)] if previous else [])


def control_plane(
    settings: Settings,
    engine: Engine,
    instances: Callable[[], Sequence[InstanceView]] | None = None,
    host_checks: Callable[[], Sequence[Check]] | None = None,
) -> ASGIApp:
    """The API and the dashboard (every path the MCP endpoint does not serve), or the
    answer that they are off. ``instances``: the supervisor's status snapshot."""
    if settings.sign_in == "off":
        return disabled_control_plane()
    try:
        current, previous = master_keys(settings)
    except ConfigError as err:
        raise errors.ConfigurationError(str(err)) from err
    keyring = Keyring(MasterKey(current), [MasterKey(previous)] if previous else [])
    oidc: dict[str, Any] = {}
    if settings.sign_in == "oidc":
        oidc = oidc_parts(settings, engine, keyring)
    return build_control_plane(
        ApiConfig(
            engine=engine,
            public_origin=settings.public_origin,
            secure_cookies=settings.public_origin.startswith("https://"),
            login_links=settings.sign_in == "link",
            max_body_bytes=min(settings.max_body_bytes, 1024 * 1024),
            trusted_proxies=settings.trusted_proxies,
            impersonation=settings.impersonation,
            keyring=keyring,
            logs_dir=settings.data_dir / "logs",
            registry=(
                installs.registry_source(settings)
                if settings.registry_index_url and settings.registry_pubkey
                else None
            ),
            install_target=installs.target(settings),
            instances=instances,
            host_checks=host_checks,
            outbound=outbound(settings),
            **oidc,
        )
    )


def resolver(settings: Settings) -> Resolver:
    """The resolver of every outbound name the gateway vets (the proxy's, the vendors')."""
    host = HostAddresses(settings.egress_allow_host_addresses)
    return DnsResolver(settings.egress_dns, host) if settings.egress_dns else SystemResolver(host)


def outbound(settings: Settings) -> Outbound:
    """The guarded transport of the gateway's own requests to authorization servers:
    the egress resolver, and the trust the proxy has toward upstreams."""
    extra = settings.egress_ca_bundle.read_bytes() if settings.egress_ca_bundle else None
    return Outbound(resolver=resolver(settings), verify=upstream_context(extra))


def oidc_parts(settings: Settings, engine: Engine, keyring: Keyring) -> dict[str, Any]:
    """The identity provider, the vault key that seals sign-in state, and the role policy."""
    # config.py makes these all-or-none; sign_in is "oidc" only when they are set.
    assert settings.oidc_issuer is not None
    assert settings.oidc_client_id is not None
    assert settings.oidc_redirect_url is not None
    secret = settings.oidc_client_secret
    provider = Provider(
        ClientConfig(
            issuer=settings.oidc_issuer,
            client_id=settings.oidc_client_id,
            redirect_url=settings.oidc_redirect_url,
            client_secret=secret.decode() if secret else None,
            scopes=SCOPES + (" " + settings.oidc_scopes if settings.oidc_scopes else ""),
        )
    )
    key = vault_store.get_or_add_item(
        engine, keyring, "oidc-flow-key", lambda: secrets.token_bytes(flow_key_bytes)
    )
    return {
        "oidc": provider,
        "flow_key": key,
        "roles_claim": settings.oidc_roles_claim,
        "roles": RolePolicy(
            admin_role=settings.oidc_admin_role,
            admin_subjects=frozenset(settings.admin_subjects),
            admin_emails=frozenset(settings.admin_emails),
        ),
    }


def remote_target(server: ServerDef) -> RemoteTarget:
    """Where a remote server's session goes, within its allowlist, authorized by the
    owner's connected account at the vendor of its (first) connected credential."""
    assert server.remote_url is not None
    vendor = next((c.vendor for c in server.credentials if c.connected), None)
    return RemoteTarget(server.remote_url, server.egress.hosts, server.egress.ports, vendor)


class Gateway:
    """The ASGI application of a running gateway, with its lifespan."""

    def __init__(
        self,
        settings: Settings,
        launcher: Launcher | None = None,
        credentials: CredentialProvider | None = None,
        egress: EgressProxy | None = None,
        host_checks: Callable[[], Sequence[Check]] | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = StoreCatalog(settings.database_url)
        keyring = _keyring_or_none(settings)
        # One key for every replica's cursors, handles and relay (router/handles.py).
        root = (
            vault_store.get_or_add_item(
                self.catalog.engine, keyring, "router-key", lambda: secrets.token_bytes(32)
            )
            if keyring is not None
            else None
        )
        self.router = Router(self.catalog, request_timeout=settings.request_timeout, root_key=root)
        self.sealer = AuditSealer(self.catalog.engine, keyring, settings.audit_days)
        # The signed index refreshed on a timer, once across replicas; only with a registry.
        self.index_refresher = (
            IndexRefresher(
                self.catalog.engine, installs.registry_source(settings), settings.registry_refresh
            )
            if settings.registry_refresh
            and settings.registry_index_url
            and settings.registry_pubkey
            else None
        )
        self.router.task_result_bytes = settings.task_result_bytes
        self.router.task_after = settings.task_after
        self.credentials: CredentialProvider = credentials or NoCredentials()
        self.launcher: Launcher = launcher or PlainLauncher()
        self.egress = egress
        self.tokens: TokenBroker | None = None  # connected accounts' tokens (jailed only)
        self.supervisor = Supervisor(
            self.launcher,
            self.router,
            spec_for=self._spec_for,
            logs_dir=settings.data_dir / "logs",
            idle_timeout=settings.idle_timeout,
            client_info=GATEWAY_INFO,
            wire_limits=WireLimits(settings.max_message_bytes, settings.max_server_requests),
        )
        self.router.attach(self.supervisor)
        self.endpoint = McpEndpoint(
            self.router,
            allowed_origins=frozenset(settings.allowed_origins),
            max_body_bytes=settings.max_body_bytes,
            request_timeout=settings.request_timeout,
            public_url=settings.public_url,
            sessions=SessionStore(
                settings.session_idle_timeout,
                settings.max_sessions,
                per_token=settings.sessions_per_token,
                per_profile=settings.sessions_per_profile,
                buffer_bytes=settings.client_buffer_bytes,
            ),
            buffer_bytes=settings.client_buffer_bytes,
            fallback=control_plane(
                settings, self.catalog.engine, self.supervisor.status, host_checks
            ),
        )
        self.metrics: MetricsListener | None = None  # GIG_METRICS_LISTEN's listener
        self._observe(settings)
        self.bus: Bus | None = None
        self._replicate(root)

    def _observe(self, settings: Settings) -> None:
        """Metrics and traces, when the operator switched them on (both off by default)."""
        if settings.metrics_listen is not None:
            families = metrics.enable()
            families.watch_instances(self.supervisor.state_counts)
            families.watch_pool("catalog", self.catalog.engine)
            host, _, port = settings.metrics_listen.rpartition(":")
            self.metrics = MetricsListener(families, host.strip("[]"), int(port))
        if settings.otlp_endpoint is not None:
            tracing.configure(settings.otlp_endpoint, sample_ratio=settings.otlp_sample_ratio)

    def _replicate(self, root: bytes | None) -> None:
        """On PostgreSQL, the replicas' bus: changes announced to every replica, and
        requests that continue another replica's call relayed to it. Without the vault
        (no shared key) or on SQLite, one replica: nothing to wire."""
        dsn = bus_conninfo(self.settings.database_url)
        if dsn is None or root is None:
            return
        bus = self.bus = Bus(dsn)
        router = self.router
        router.pushed = lambda: bus.connected
        bus.on(CONFIG_CHANNEL, lambda _payload: router.poke())
        bus.on_connect.append(router.poke)
        self.endpoint.relay = Relay(
            bus, router, derive(root, "relay"), self.settings.client_buffer_bytes
        )

    def owner_of(self, key: InstanceKey) -> int | None:
        """Whom an instance acts for — their credentials, their audit rows: its
        profile's owner; nobody once the profile is gone."""
        profile = self.catalog.profile(key.profile_id)
        return profile.owner_id if profile is not None else None

    def _spec_for(self, key: InstanceKey, server: ServerDef) -> LaunchSpec:
        owner = self.owner_of(key)
        if owner is None:
            raise LaunchError(f"profile {key.profile_id} no longer exists")
        if server.remote_url is not None:
            return LaunchSpec(key, (), owner_id=owner, remote=remote_target(server))
        env = launch_environment(self.credentials, key, server)
        limits = dataclasses.replace(JailLimits(), **dict(server.limits))
        return LaunchSpec(
            key,
            server.command,
            env,
            server.cwd,
            owner_id=owner,
            limits=limits,
            rootfs=server.rootfs,
        )

    async def start(self) -> None:
        await self.catalog.start()
        if self.bus is not None:
            await self.bus.start()
            log.info(
                "replica %s on the database's bus (%s)",
                self.router.replica,
                "listening" if self.bus.connected else "not reachable yet; polling",
            )
        if self.metrics is not None:
            try:
                await self.metrics.start()
            except OSError as exc:
                raise errors.ConfigurationError(
                    f"GIG_METRICS_LISTEN: cannot listen on {self.settings.metrics_listen}: "
                    f"{exc.strerror}"
                ) from None
        await self.sealer.start()
        if self.index_refresher is not None:
            await self.index_refresher.start()
        # The sandbox reconciles what a crashed run left (cgroups, veths, firewall)
        # before the first server can start.
        removed = await self.launcher.start()
        if any(removed.values()):
            log.warning("removed leftovers of an earlier run: %s", removed)
        if self.egress is not None:
            await self.egress.audit.start()
            await self.egress.start()
        self.router.start()

    async def stop(self) -> None:
        if self.index_refresher is not None:
            await self.index_refresher.aclose()
        await self.endpoint.aclose()
        if self.endpoint.relay is not None:
            await self.endpoint.relay.aclose()
        await self.router.aclose()
        await self.supervisor.shutdown()
        if self.egress is not None:
            await self.egress.aclose()
            await self.egress.audit.aclose()
        await self.launcher.aclose()
        if self.bus is not None:
            await self.bus.aclose()
        await self.catalog.aclose()
        # Last: every writer has flushed; what they wrote is sealed and signed.
        await self.sealer.aclose()
        if self.metrics is not None:
            await self.metrics.aclose()
        # The spans of the shutdown itself included; blocking HTTP, so in a thread.
        await asyncio.to_thread(tracing.shutdown)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await self.endpoint(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    log.exception("gateway failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


@dataclass(frozen=True, slots=True)
class EgressParts:
    """What the egress side needs before the first jail is built: the store, the vault's
    keys, and the CA every jail's bundle holds."""

    engine: Engine
    keyring: Keyring
    ca: CertificateAuthority


def egress_parts(settings: Settings) -> EgressParts:
    """Open the vault and the egress CA (made on first use)."""
    try:
        current, previous = master_keys(settings)
    except ConfigError as err:
        raise errors.ConfigurationError(str(err)) from err
    keyring = Keyring(MasterKey(current), [MasterKey(previous)] if previous else [])
    engine = make_engine(settings.database_url)
    migrate(engine)
    try:
        ca = authority.load_or_create(engine, keyring)
    except VaultError as err:
        raise errors.VaultError(f"cannot open the egress CA in the vault: {err}") from err
    return EgressParts(engine, keyring, ca)


def attach_egress(gateway: Gateway, settings: Settings, parts: EgressParts) -> None:
    """Give a jailed gateway its credential provider and egress proxy, and hook them to
    the launcher and the supervisor so that a grant lives exactly as long as its
    instance."""
    # Imported here: a gateway run unjailed never loads the sandbox's native libraries.
    from gigmcp.sandbox.launcher import SandboxLauncher

    assert isinstance(gateway.launcher, SandboxLauncher)
    broker = TokenBroker(
        parts.engine, parts.keyring, outbound(settings),
        reconnect_at=settings.public_origin + "/connections",
    )  # fmt: skip
    provider = VaultCredentials(parts.engine, parts.keyring, gateway.owner_of, tokens=broker)
    extra = settings.egress_ca_bundle.read_bytes() if settings.egress_ca_bundle else None
    p = settings.egress_port
    gateway.credentials = provider
    gateway.tokens = broker
    if metrics.active is not None:
        metrics.active.watch_pool("vault", parts.engine)
    gateway.router.gate = provider.check_accounts
    proxy = gateway.egress = EgressProxy(
        identities=gateway.launcher.identities,
        grants=provider.for_instance,
        resolver=resolver(settings),
        leaves=LeafCache(parts.ca),
        upstream_tls=upstream_context(extra),
        audit=ObservedAudit(parts.engine, settings.egress_audit_days),  # counted, traced
        ports=ProxyPorts.from_base(p),
        port_rules=PortRules(settings.egress_extra_ports),
    )
    # Remote servers' requests get egress audit rows like a jail's.
    remote = RemoteLauncher(
        resolver(settings), upstream_context(extra), broker, audit=proxy.audit.record
    )
    gateway.supervisor.remote = remote
    identities = gateway.launcher.identities

    def ended(key: InstanceKey) -> None:
        # A restarted instance may already be registered under the same key: its grant
        # is the new one and stays.
        if not any(i.key == key for i in identities.snapshot().values()):
            provider.forget(key)
            proxy.forget(key)

    gateway.launcher.on_instance_end.append(ended)

    def retired(key: InstanceKey) -> None:
        # Taken out of service (its grant changed, its server went away, idle, shutdown):
        # the grant goes now, not when the process is gone. The supervisor starts no new
        # instance of the key until this one has ended.
        provider.forget(key)
        proxy.forget(key)

    gateway.supervisor.on_retire.append(retired)
