"""The ``gigmcp`` command: administer the local store and run the gateway.

Owns argument parsing and human-facing output. User errors are one line on stderr and a
non-zero exit, never a traceback. It prints a token only once, at mint time, alone on
stdout so ``$(gigmcp token mint p)`` works.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import typer
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from gigmcp import filemodes
from gigmcp.config import ConfigError, Settings, ensure_data_dir, load_settings
from gigmcp.store import admin
from gigmcp.store.admin import AdminError
from gigmcp.store.db import make_engine, migrate
from gigmcp.store.limits import LimitError, parse_size
from gigmcp.store.models import Profile, ProfileServer, ProfileToken, ProfileTool, Server

app = typer.Typer(
    name="gigmcp",
    help="Gig'MCP: a security-first MCP gateway. One endpoint per profile at /mcp/p/<profile>.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
profile_app = typer.Typer(help="Profiles: what a client connects to.", no_args_is_help=True)
server_app = typer.Typer(help="MCP server definitions (stdio commands).", no_args_is_help=True)
token_app = typer.Typer(help="Profile tokens (bearer secrets, shown once).", no_args_is_help=True)
tool_app = typer.Typer(help="Per-profile tool selection.", no_args_is_help=True)
app.add_typer(profile_app, name="profile")
app.add_typer(server_app, name="server")
app.add_typer(token_app, name="token")
app.add_typer(tool_app, name="tool")

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"gigmcp: {message}", err=True)
    raise typer.Exit(code)


def _store() -> tuple[Settings, Engine, int]:
    try:
        settings = load_settings()
        ensure_data_dir(settings)
    except ConfigError as err:
        fail(str(err), 2)
    engine = make_engine(settings.database_url)
    migrate(engine)
    return settings, engine, admin.local_admin(engine)


def _run(action: Callable[[], object]) -> None:
    try:
        action()
    except AdminError as err:
        fail(str(err))


# ------------------------------------------------------------------ profiles


@profile_app.command("create")
def profile_create(slug: str) -> None:
    """Create a profile (slug: 2-63 of a-z, 0-9, '-')."""
    _, engine, uid = _store()
    _run(lambda: admin.create_profile(engine, uid, slug))
    typer.echo(f"created profile {slug}", err=True)


@profile_app.command("list")
def profile_list() -> None:
    """List profiles and their servers."""
    _, engine, _ = _store()
    with Session(engine) as s:
        for p in s.scalars(select(Profile).order_by(Profile.slug)):
            names = s.scalars(
                select(Server.name)
                .join(ProfileServer, ProfileServer.server_id == Server.id)
                .where(ProfileServer.profile_id == p.id)
            ).all()
            typer.echo(f"{p.slug}\t{', '.join(names) or '-'}")


@profile_app.command("delete")
def profile_delete(slug: str) -> None:
    """Delete a profile, its assignments and its tokens."""
    _, engine, uid = _store()
    _run(lambda: admin.delete_profile(engine, uid, slug))
    typer.echo(f"deleted profile {slug}", err=True)


@profile_app.command("assign")
def profile_assign(
    slug: str,
    server: str,
    tools_off: bool = typer.Option(False, "--tools-off", help="Tools start disabled."),
) -> None:
    """Assign a server to a profile."""
    _, engine, uid = _store()
    _run(lambda: admin.assign(engine, uid, slug, server, not tools_off))
    typer.echo(f"assigned {server} to {slug}", err=True)


@profile_app.command("unassign")
def profile_unassign(slug: str, server: str) -> None:
    """Remove a server from a profile."""
    _, engine, uid = _store()
    _run(lambda: admin.unassign(engine, uid, slug, server))
    typer.echo(f"unassigned {server} from {slug}", err=True)


@profile_app.command("show")
def profile_show(slug: str) -> None:
    """Show a profile's servers and tool selections."""
    _, engine, _ = _store()
    with Session(engine) as s:
        p = s.scalar(select(Profile).where(Profile.slug == slug))
        if p is None:
            fail(f"no profile named {slug!r}")
        typer.echo(f"profile {p.slug} (endpoint /mcp/p/{p.slug})")
        for a in s.scalars(select(ProfileServer).where(ProfileServer.profile_id == p.id)):
            srv = s.get(Server, a.server_id)
            assert srv is not None
            default = "on" if a.default_enabled else "off"
            typer.echo(f"  {srv.name}: tools {default} by default")
            for t in s.scalars(select(ProfileTool).where(ProfileTool.assignment_id == a.id)):
                typer.echo(f"    {t.tool}: {'enabled' if t.enabled else 'disabled'}")


# ------------------------------------------------------------------ servers


@server_app.command(
    "add", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def server_add(
    ctx: typer.Context,
    name: str,
    env: list[str] = typer.Option([], "--env", help="KEY=VALUE literal (not for secrets)."),
    env_name: list[str] = typer.Option([], "--env-name", help="Declared variable, set later."),
    cwd: str = typer.Option(None, "--cwd", help="Working directory."),
    memory: str = typer.Option(None, "--memory", help="Memory limit, e.g. 512M (default 512M)."),
    pids: int = typer.Option(None, "--pids", help="Process/thread limit (default 256)."),
    cpu_weight: int = typer.Option(None, "--cpu-weight", help="CPU share 1-10000 (default 100)."),
    nofile: int = typer.Option(None, "--nofile", help="Open files limit (default 1024)."),
    tmp_size: str = typer.Option(None, "--tmp-size", help="Size of /tmp (default 64M)."),
    home_size: str = typer.Option(None, "--home-size", help="Size of $HOME (default 64M)."),
    egress: list[str] = typer.Option([], "--egress", help="Allowed host (or *.suffix)."),
    egress_port: list[int] = typer.Option(
        [], "--egress-port", help="Allowed port (default 443; 80 plain HTTP, no credential)."
    ),
    credential: list[str] = typer.Option(
        [], "--credential", help="Credential definition (JSON, as in a registry manifest)."
    ),
) -> None:
    """Add a stdio server: gigmcp server add NAME [--env K=V] [--memory 1G] -- COMMAND [ARGS]..."""
    command = list(ctx.args)
    limits = _limits(memory, pids, cpu_weight, nofile, tmp_size, home_size)
    egress_json = _egress(egress, egress_port)
    creds = _credentials(credential)
    literal: dict[str, str] = {}
    for item in env:
        key, sep, value = item.partition("=")
        if not sep:
            fail(f"--env expects KEY=VALUE, got {item!r} (use --env-name KEY for a declared name)")
        literal[key] = value
    settings, engine, uid = _store()
    _run(
        lambda: admin.add_server(
            engine,
            uid,
            name,
            command,
            literal,
            list(env_name),
            cwd,
            limits,
            egress_json,
            creds,
            extra_ports=settings.egress_extra_ports,
        )
    )
    typer.echo(f"added server {name}", err=True)
    from gigmcp.cli.launchcheck import warn_on_add

    warn_on_add(name, command, cwd)


def _egress(hosts: list[str], ports: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {"hosts": list(hosts)}
    if ports:
        out["ports"] = list(ports)
    return out


def _credentials(raw: list[str]) -> list[dict[str, Any]]:
    out = []
    for item in raw:
        try:
            parsed = json.loads(item)
        except json.JSONDecodeError as exc:
            fail(f"--credential: not JSON ({exc.msg}): {item[:80]!r}")
        if not isinstance(parsed, dict):
            fail('--credential: a JSON object like {"id": ..., "type": ..., "inject": {...}}')
        out.append(parsed)
    return out


@server_app.command("egress")
def server_egress(
    name: str,
    egress: list[str] = typer.Option([], "--egress", help="Allowed host (or *.suffix)."),
    egress_port: list[int] = typer.Option([], "--egress-port", help="Allowed port."),
    credential: list[str] = typer.Option([], "--credential", help="Credential definition."),
) -> None:
    """Replace a server's egress allowlist (and credential definitions, if given)."""
    settings, engine, uid = _store()
    creds = _credentials(credential) if credential else None
    egress_json = _egress(egress, egress_port)
    _run(
        lambda: admin.set_egress(
            engine, uid, name, egress_json, creds, extra_ports=settings.egress_extra_ports
        )
    )
    typer.echo(f"egress of {name} updated; running instances restart with it", err=True)


def _limits(
    memory: str | None,
    pids: int | None,
    cpu_weight: int | None,
    nofile: int | None,
    tmp_size: str | None,
    home_size: str | None,
) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        if memory is not None:
            out["memory_bytes"] = parse_size("--memory", memory)
        if tmp_size is not None:
            out["tmp_bytes"] = parse_size("--tmp-size", tmp_size)
        if home_size is not None:
            out["home_bytes"] = parse_size("--home-size", home_size)
    except LimitError as exc:
        fail(str(exc))
    for key, value in (("pids", pids), ("cpu_weight", cpu_weight), ("nofile", nofile)):
        if value is not None:
            out[key] = value
    return out


@server_app.command("limits")
def server_limits(
    name: str,
    memory: str = typer.Option(None, "--memory", help="Memory limit, e.g. 512M."),
    pids: int = typer.Option(None, "--pids", help="Process/thread limit."),
    cpu_weight: int = typer.Option(None, "--cpu-weight", help="CPU share 1-10000."),
    nofile: int = typer.Option(None, "--nofile", help="Open files limit."),
    tmp_size: str = typer.Option(None, "--tmp-size", help="Size of /tmp."),
    home_size: str = typer.Option(None, "--home-size", help="Size of $HOME."),
) -> None:
    """Change a server's sandbox limits (they apply from its next start)."""
    limits = _limits(memory, pids, cpu_weight, nofile, tmp_size, home_size)
    if not limits:
        fail("nothing to change: give at least one of --memory, --pids, --cpu-weight, ...")
    _, engine, uid = _store()
    _run(lambda: admin.set_limits(engine, uid, name, limits))
    typer.echo(f"limits of {name} updated; they apply from its next start", err=True)


@server_app.command("list")
def server_list() -> None:
    """List servers and their commands."""
    _, engine, _ = _store()
    with Session(engine) as s:
        for srv in s.scalars(select(Server).order_by(Server.name)):
            typer.echo(f"{srv.name}\t{' '.join(srv.command)}")


@server_app.command("remove")
def server_remove(name: str) -> None:
    """Remove a server (and its assignments)."""
    _, engine, uid = _store()
    _run(lambda: admin.remove_server(engine, uid, name))
    typer.echo(f"removed server {name}", err=True)


@server_app.command("logs")
def server_logs(
    name: str,
    profile: str = typer.Option(..., "--profile", help="Profile whose instance to show."),
    lines: int = typer.Option(100, "--lines", min=1, max=100_000),
) -> None:
    """Show the last lines of a server instance's log (its stderr and lifecycle)."""
    from gigmcp.supervisor.logs import tail

    settings, engine, _ = _store()
    with Session(engine) as s:
        p = s.scalar(select(Profile).where(Profile.slug == profile))
        if p is None:
            fail(f"no profile named {profile!r}")
        pid = p.id
    out = tail(settings.data_dir / "logs", pid, name, lines)
    if not out:
        fail(f"no log yet for {name} in profile {profile} (it has not run)")
    typer.echo("\n".join(out))


# ------------------------------------------------------------------ tools


@tool_app.command("enable")
def tool_enable(slug: str, server: str, tool: str) -> None:
    """Enable a tool of a server in a profile."""
    _, engine, uid = _store()
    _run(lambda: admin.set_tool(engine, uid, slug, server, tool, True))


@tool_app.command("disable")
def tool_disable(slug: str, server: str, tool: str) -> None:
    """Disable a tool of a server in a profile (hidden and uncallable at once)."""
    _, engine, uid = _store()
    _run(lambda: admin.set_tool(engine, uid, slug, server, tool, False))


# ------------------------------------------------------------------ tokens


@token_app.command("mint")
def token_mint(
    slug: str,
    name: str = typer.Option(None, "--name"),
    expires_in: str = typer.Option(None, "--expires-in", help="e.g. 12h, 30d"),
) -> None:
    """Mint a token for a profile. It is printed once and never stored in clear."""
    _, engine, uid = _store()
    try:
        ttl = admin.parse_duration(expires_in) if expires_in else None
        token = admin.mint_token(engine, uid, slug, name, ttl)
    except AdminError as err:
        fail(str(err))
    typer.echo("gigmcp: store this token now; it will not be shown again.", err=True)
    sys.stdout.write(token + "\n")


@token_app.command("list")
def token_list(slug: str = typer.Argument(None)) -> None:
    """List tokens (id, profile, name, dates); never the token itself."""
    _, engine, _ = _store()
    with Session(engine) as s:
        q = select(ProfileToken, Profile.slug).join(Profile, Profile.id == ProfileToken.profile_id)
        if slug:
            q = q.where(Profile.slug == slug)
        for t, pslug in s.execute(q.order_by(ProfileToken.id)):
            state = "revoked" if t.revoked_at else "active"
            typer.echo(
                f"{t.id}\t{pslug}\t{t.display}\t{t.name or '-'}\t{state}\t"
                f"expires={t.expires_at or '-'}\tlast_used={t.last_used_at or '-'}"
            )


@token_app.command("revoke")
def token_revoke(token_id: int) -> None:
    """Revoke a token by id; takes effect on the gateway's next request."""
    _, engine, uid = _store()
    _run(lambda: admin.revoke_token(engine, uid, token_id))
    typer.echo(f"revoked token {token_id}", err=True)


@app.command("doctor")
def doctor() -> None:
    """Check that this host can jail MCP servers; say what is missing and how to fix it."""
    from gigmcp.sandbox.doctor import run_checks
    from gigmcp.sandbox.mode import MODES

    # Only this variable: the doctor must run on a host with nothing else configured yet.
    setting = os.environ.get("GIG_SANDBOX_MODE", "auto").strip().lower()
    if setting not in MODES:
        typer.echo(
            f"gigmcp: GIG_SANDBOX_MODE: expected auto, root or userns, not {setting!r}",
            err=True,
        )
        raise typer.Exit(2)
    checks = run_checks(setting)
    width = max(len(c.name) for c in checks)
    for c in checks:
        if c.ok:
            typer.echo(f"ok       {c.name:<{width}}  {c.detail}".rstrip())
            if c.warning:
                typer.echo(f"WARNING  {c.name:<{width}}  {c.warning}")
        else:
            typer.echo(
                f"MISSING  {c.name:<{width}}  {c.problem}\n         {'':<{width}}  fix: {c.fix}"
            )
    from gigmcp.cli.launchcheck import print_server_checks

    servers_ok = print_server_checks()
    if not all(c.ok for c in checks):
        typer.echo("gigmcp: this host cannot jail MCP servers (see above)", err=True)
        raise typer.Exit(1)
    if not servers_ok:
        typer.echo(
            "gigmcp: this host can jail MCP servers, but some servers cannot run in the "
            "jail (see above)",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo("gigmcp: this host can jail MCP servers", err=True)


def _register_serve() -> None:
    from gigmcp.cli import credentials, install, pins, registry  # noqa: F401 - register their commands
    from gigmcp.cli.serve import serve

    app.command("serve")(serve)


_register_serve()


def main() -> None:
    # First thing, before any file is made: nothing the gateway writes is readable by
    # another user unless it says so (the package folders the jails read do).
    filemodes.set_umask()
    app()
