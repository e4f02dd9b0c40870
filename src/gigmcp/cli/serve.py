"""``gigmcp serve``: run the gateway in the foreground on its embedded defaults.

Owns choosing the launcher (the jail, or loudly none), reporting why the gateway will
not start, and turning settings into a listening server; what is wired to what is
``app.py``'s. It must never print a secret, and it
refuses to run untrusted servers unjailed unless the operator asks for it loudly.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import typer
from sqlalchemy import Engine

from gigmcp.cli.login import login_link_url
from gigmcp.config import ConfigError, Settings, ensure_master_key, load_settings
from gigmcp.control import loginlinks
from gigmcp.core.launch import Launcher
from gigmcp.errors import GigError
from gigmcp.supervisor.launcher import PlainLauncher
from gigmcp.telemetry import logjson

if TYPE_CHECKING:
    from gigmcp.sandbox.doctor import Check


def _split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


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
    # Imported here, not at the top: every other command would otherwise pay for the
    # whole gateway (the web framework, the proxy) at each start, about half a second.
    import uvicorn

    from gigmcp.app import EgressParts, Gateway, attach_egress, egress_parts

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
    logjson.install(settings.log_format, settings.log_level)
    launcher: Launcher
    parts: EgressParts | None = None
    # What the administrators' overview shows of this host (checked again now and then).
    host_checks: Callable[[], list[Check]] | None = None
    if insecure_no_sandbox:
        say(
            settings,
            "gigmcp: WARNING: --insecure-no-sandbox: MCP servers run WITHOUT the jail, with "
            "this host's files and network. Development only; never untrusted servers.",
            logging.WARNING,
        )
        launcher = PlainLauncher()
    else:
        from gigmcp.sandbox.doctor import recurring, run_checks, summary
        from gigmcp.sandbox.launcher import SandboxConfig, SandboxLauncher

        checks = run_checks(settings.sandbox_mode)
        problems = summary(checks)
        if problems:
            typer.echo(
                f"gigmcp: cannot jail MCP servers on this host, refusing to start: {problems}. "
                "Run `gigmcp doctor` for details; --insecure-no-sandbox runs servers "
                "unjailed (development only).",
                err=True,
            )
            raise typer.Exit(2)
        from gigmcp.sandbox.mode import resolve

        say(
            settings,
            f"gigmcp: every MCP server runs jailed (bubblewrap, own network namespace on "
            f"{settings.sandbox_subnet}, {resolve(settings.sandbox_mode)} mode, "
            f"{settings.sandbox_pool} jails kept ready)",
        )
        try:
            parts = egress_parts(settings)
        except GigError as err:
            typer.echo(f"gigmcp: {err}", err=True)
            raise typer.Exit(2) from err
        host_checks = recurring(settings.sandbox_mode, first=checks)
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
    gateway = Gateway(settings, launcher=launcher, host_checks=host_checks)
    if parts is not None:
        attach_egress(gateway, settings, parts)
    config = uvicorn.Config(
        gateway,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        # JSON logs: uvicorn's own loggers go through the root handler too.
        log_config=None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
        # SIGTERM: stop accepting, let in-flight requests finish for up to this long,
        # then the lifespan's shutdown stops the instances and flushes and seals the
        # audit (Gateway.stop).
        timeout_graceful_shutdown=settings.drain_seconds,
    )
    say(settings, f"gigmcp: listening on http://{settings.listen}/mcp/p/<profile>")
    if settings.metrics_listen is not None:
        say(settings, f"gigmcp: metrics on http://{settings.metrics_listen}/metrics")
    if settings.otlp_endpoint is not None:
        say(settings, f"gigmcp: traces to {settings.otlp_endpoint} (OTLP/HTTP)")
    announce_control_plane(settings, gateway.catalog.engine)
    uvicorn.Server(config).run()
    sys.exit(0)


def say(settings: Settings, line: str, level: int = logging.INFO) -> None:
    """A start-up line on stderr, as it always was; with ``GIG_LOG_FORMAT=json`` a log
    line like every other (whatever reads the stream expects one JSON object a line)."""
    if settings.log_format == "json":
        logging.getLogger("gigmcp.serve").log(level, "%s", line.removeprefix("gigmcp: "))
    else:
        typer.echo(line, err=True)


def announce_control_plane(settings: Settings, engine: Engine) -> None:
    """Say how people sign in to the control plane; in the embedded default, print a
    one-time link for the local administrator. Printed on this terminal only, never
    logged: the link signs in whoever opens it first, within minutes."""
    mode = settings.sign_in
    if mode == "oidc":
        say(settings, f"gigmcp: control plane: sign in with {settings.oidc_issuer}")
    elif mode == "off":
        say(
            settings,
            "gigmcp: control plane OFF: no identity provider, and listening beyond loopback "
            "(set GIG_OIDC_ISSUER, GIG_OIDC_CLIENT_ID and GIG_OIDC_REDIRECT_URL to enable it)",
            logging.WARNING,
        )
    elif not sys.stderr.isatty():
        # Not a terminal (a service's journal, a container's log): a live link there
        # would sign in whoever reads the log first.
        say(
            settings,
            "gigmcp: NO IDENTITY PROVIDER: sign in to the control plane with a one-time link "
            "from 'gigmcp login-link' (loopback only)",
        )
    else:
        link = login_link_url(settings, loginlinks.mint(engine))
        bar = "=" * 78
        typer.echo(
            f"{bar}\n"
            "gigmcp: NO IDENTITY PROVIDER: the control plane signs in the local administrator\n"
            "with a one-time link (loopback only; single use; expires in 10 minutes):\n"
            f"  {link}\n"
            "A new link any time: gigmcp login-link\n"
            f"{bar}",
            err=True,
        )
