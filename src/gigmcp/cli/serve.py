"""``gigmcp serve``: run the gateway in the foreground on its embedded defaults.

Owns turning settings into a listening server. It must never print a secret, and it
refuses to run untrusted servers unjailed unless the operator asks for it loudly.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import typer
from sqlalchemy import Engine

from gigmcp.app import Gateway
from gigmcp.config import ConfigError, Settings, ensure_master_key, load_settings, master_keys
from gigmcp.credentials.vault_provider import VaultCredentials
from gigmcp.egress import authority
from gigmcp.egress.audit import EgressAudit
from gigmcp.egress.certs import CertificateAuthority, LeafCache, upstream_context
from gigmcp.egress.hostaddr import HostAddresses
from gigmcp.egress.listeners import ProxyPorts
from gigmcp.egress.policy import PortRules
from gigmcp.egress.proxy import EgressProxy
from gigmcp.egress.resolver import DnsResolver, SystemResolver
from gigmcp.store.db import make_engine, migrate
from gigmcp.supervisor.launcher import Launcher, PlainLauncher
from gigmcp.upstream.types import InstanceKey
from gigmcp.vault.keys import Keyring, MasterKey, VaultError


def _split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


@dataclass
class _EgressParts:
    engine: Engine
    keyring: Keyring
    ca: CertificateAuthority


def _egress_parts(settings: Settings) -> _EgressParts:
    """The vault and the egress CA, ready before the first jail is built (every jail's
    CA bundle holds the CA's certificate)."""
    try:
        current, previous = master_keys(settings)
    except ConfigError as err:
        typer.echo(f"gigmcp: {err}", err=True)
        raise typer.Exit(2) from err
    keyring = Keyring(MasterKey(current), [MasterKey(previous)] if previous else [])
    engine = make_engine(settings.database_url)
    migrate(engine)
    try:
        ca = authority.load_or_create(engine, keyring)
    except VaultError as err:
        typer.echo(f"gigmcp: cannot open the egress CA in the vault: {err}", err=True)
        raise typer.Exit(2) from err
    return _EgressParts(engine, keyring, ca)


def _attach_egress(gateway: Gateway, settings: Settings, parts: _EgressParts) -> None:
    from gigmcp.sandbox.launcher import SandboxLauncher

    assert isinstance(gateway.launcher, SandboxLauncher)

    def owner_of(key: InstanceKey) -> int | None:
        profile = gateway.catalog.profile(key.profile_id)
        return profile.owner_id if profile is not None else None

    provider = VaultCredentials(parts.engine, parts.keyring, owner_of)
    extra = settings.egress_ca_bundle.read_bytes() if settings.egress_ca_bundle else None
    p = settings.egress_port
    gateway.credentials = provider
    host = HostAddresses(settings.egress_allow_host_addresses)
    proxy = gateway.egress = EgressProxy(
        identities=gateway.launcher.identities,
        grants=provider.for_instance,
        resolver=(
            DnsResolver(settings.egress_dns, host) if settings.egress_dns else SystemResolver(host)
        ),
        leaves=LeafCache(parts.ca),
        upstream_tls=upstream_context(extra),
        audit=EgressAudit(parts.engine, settings.egress_audit_days),
        ports=ProxyPorts.from_base(p),
        port_rules=PortRules(settings.egress_extra_ports),
    )
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


def serve(
    listen: str = typer.Option(
        None, "--listen", help="HOST:PORT to listen on (default GIG_LISTEN)."
    ),
    insecure_no_sandbox: bool = typer.Option(
        False,
        "--insecure-no-sandbox",
        help="Run MCP servers without the jail (development only; never untrusted servers).",
    ),
) -> None:
    """Start the gateway: MCP endpoints at /mcp/p/<profile>."""
    import uvicorn

    try:
        settings = load_settings()
        notice = ensure_master_key(settings)
        if listen:
            settings = settings.with_listen(listen)
    except ConfigError as err:
        typer.echo(f"gigmcp: {err}", err=True)
        raise typer.Exit(2) from err
    if notice:
        typer.echo(notice, err=True)
    launcher: Launcher
    parts: _EgressParts | None = None
    if insecure_no_sandbox:
        typer.echo(
            "gigmcp: WARNING: --insecure-no-sandbox: MCP servers run WITHOUT the jail, with "
            "this host's files and network. Development only; never untrusted servers.",
            err=True,
        )
        launcher = PlainLauncher()
    else:
        from gigmcp.sandbox.doctor import run_checks, summary
        from gigmcp.sandbox.launcher import SandboxConfig, SandboxLauncher

        problems = summary(run_checks(settings.sandbox_mode))
        if problems:
            typer.echo(
                f"gigmcp: cannot jail MCP servers on this host, refusing to start: {problems}. "
                "Run `gigmcp doctor` for details; --insecure-no-sandbox runs servers "
                "unjailed (development only).",
                err=True,
            )
            raise typer.Exit(2)
        from gigmcp.sandbox.mode import resolve

        typer.echo(
            f"gigmcp: every MCP server runs jailed (bubblewrap, own network namespace on "
            f"{settings.sandbox_subnet}, {resolve(settings.sandbox_mode)} mode, "
            f"{settings.sandbox_pool} jails kept ready)",
            err=True,
        )
        parts = _egress_parts(settings)
        launcher = SandboxLauncher(
            SandboxConfig(
                subnet=settings.sandbox_subnet,
                proxy_port=settings.egress_port,
                pool_size=settings.sandbox_pool,
                ca_bundle=parts.ca.cert_pem(),
                mode=settings.sandbox_mode,
            )
        )
    host, port = _split_listen(settings.listen)
    gateway = Gateway(settings, launcher=launcher)
    if parts is not None:
        _attach_egress(gateway, settings, parts)
    config = uvicorn.Config(
        gateway,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )
    typer.echo(f"gigmcp: listening on http://{settings.listen}/mcp/p/<profile>", err=True)
    uvicorn.Server(config).run()
    sys.exit(0)
