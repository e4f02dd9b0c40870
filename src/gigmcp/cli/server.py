"""``gigmcp server add | egress | limits | list | remove | logs``: server definitions
given by command.

Owns these commands' arguments (``--env``, ``--egress``, ``--credential`` JSON, sizes
such as ``512M``) and output, and the warning when the jail could not run what was
added. It must never reach the store but through the service layer
(``control/servers.py``).
"""

from __future__ import annotations

import json
from typing import Any

import typer

from gigmcp.cli.app import act, fail, server_app, store
from gigmcp.control import servers
from gigmcp.store.limits import LimitError, parse_size


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
    st = store()
    servers.add_server(
        st.engine,
        st.actor,
        name,
        command,
        literal,
        list(env_name),
        cwd,
        limits,
        egress_json,
        creds,
        extra_ports=st.settings.egress_extra_ports,
    )
    typer.echo(f"added server {name}", err=True)
    from gigmcp.cli.launchcheck import warn_on_add

    warn_on_add(name, command, cwd)


@server_app.command("add-remote")
def server_add_remote(
    name: str,
    url: str,
    client_id: str = typer.Option(
        None, "--client-id", help="A client registered by hand at its authorization server."
    ),
    client_secret_stdin: bool = typer.Option(
        False, "--client-secret-stdin", help="Read that client's secret from standard input."
    ),
    registration: str = typer.Option(
        "auto",
        "--registration",
        help="How the gateway identifies itself at the server's authorization server: "
        "auto, metadata-document, dynamic (for a gateway the vendor cannot reach) or "
        "pre-registered (with --client-id).",
    ),
) -> None:
    """Add a remote MCP server by its https:// URL (Streamable HTTP); its authorization,
    if it asks for one, is worked out and the gateway registered there."""
    from gigmcp.app import outbound
    from gigmcp.cli.app import keyring
    from gigmcp.control import remote

    st = store()
    client = None
    if client_id:
        secret = typer.get_text_stream("stdin").read().strip() if client_secret_stdin else ""
        client = remote.PreRegistered(client_id, secret.encode() or None)
    added = remote.add_remote_server(
        st.engine, keyring(st.settings), outbound(st.settings), st.actor, name, url,
        st.settings.public_origin, client, registration,
    )  # fmt: skip
    typer.echo(f"added remote server {name}", err=True)
    if added.vendor:
        typer.echo(
            f"it asks for authorization: each user connects it on the dashboard's Accounts "
            f"page ({st.settings.public_origin}/connections), as {added.vendor}",
            err=True,
        )


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
    creds = _credentials(credential) if credential else None
    egress_json = _egress(egress, egress_port)
    act(
        lambda st: servers.set_egress(
            st.engine,
            st.actor,
            name,
            egress_json,
            creds,
            extra_ports=st.settings.egress_extra_ports,
        ),
        f"egress of {name} updated; running instances restart with it",
    )


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
    act(
        lambda st: servers.set_limits(st.engine, st.actor, name, limits),
        f"limits of {name} updated; they apply from its next start",
    )


@server_app.command("list")
def server_list() -> None:
    """List servers and their commands."""
    st = store()
    for srv in servers.list_servers(st.engine, st.actor):
        typer.echo(f"{srv.name}\t{' '.join(srv.command)}")


@server_app.command("remove")
def server_remove(name: str) -> None:
    """Remove a server (and its assignments)."""
    act(lambda st: servers.remove_server(st.engine, st.actor, name), f"removed server {name}")


@server_app.command("logs")
def server_logs(
    name: str,
    profile: str = typer.Option(..., "--profile", help="Profile whose instance to show."),
    lines: int = typer.Option(100, "--lines", min=1, max=100_000),
) -> None:
    """Show the last lines of a server instance's log (its stderr and lifecycle)."""
    st = store()
    logs_dir = st.settings.data_dir / "logs"
    out = servers.log_lines(st.engine, st.actor, logs_dir, profile, name, lines)
    typer.echo("\n".join(out))
