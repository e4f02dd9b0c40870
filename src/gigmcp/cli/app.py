"""What every ``gigmcp`` command group shares: the Typer app and its sub-apps, the
store the commands act on, the identity they act as, and how an error is said.

Owns building the settings, the migrated store and the acting user — the local
administrator, made explicit here, once: the command line is run by whoever
administers the host — and turning the service layer's errors into one line on stderr
and an exit code (2 for configuration, 1 otherwise), never a traceback. It must never
touch the ORM (the service layer does), and never print a secret.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn, TypeVar

import typer
from sqlalchemy import Engine

from gigmcp.config import (
    Settings,
    ensure_data_dir,
    ensure_master_key,
    load_settings,
    master_keys,
)
from gigmcp.control import actor
from gigmcp.control.actor import Actor
from gigmcp.errors import ConfigurationError, GigError
from gigmcp.store.db import make_engine, migrate
from gigmcp.vault.keys import Keyring, MasterKey

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
credential_app = typer.Typer(
    help="Credential values (write-only; read from standard input).", no_args_is_help=True
)
vault_app = typer.Typer(help="The vault that seals credential values.", no_args_is_help=True)
registry_app = typer.Typer(
    help="Build, sign and check a registry index of your own.", no_args_is_help=True
)
app.add_typer(profile_app, name="profile")
app.add_typer(server_app, name="server")
app.add_typer(token_app, name="token")
app.add_typer(tool_app, name="tool")
app.add_typer(credential_app, name="credential")
app.add_typer(vault_app, name="vault")
audit_app = typer.Typer(
    help="The audit trails: verify their hash chains, export them.", no_args_is_help=True
)
app.add_typer(registry_app, name="registry")
app.add_typer(audit_app, name="audit")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Store:
    """What a command acts on, and as whom."""

    settings: Settings
    engine: Engine
    actor: Actor


def exit_code(err: GigError) -> int:
    """2 when the gateway's own settings or files are at fault, 1 for the request."""
    return 2 if isinstance(err, ConfigurationError) else 1


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"gigmcp: {message}", err=True)
    raise typer.Exit(code)


def store() -> Store:
    """The settings, the migrated store, and the local administrator the command line
    acts as."""
    settings = load_settings()
    ensure_data_dir(settings)
    engine = make_engine(settings.database_url)
    migrate(engine)
    return Store(settings, engine, actor.local_admin(engine))


def act(action: Callable[[Store], object], done: str | None = None) -> None:
    """Carry out a change on the store as the local administrator; say ``done`` after."""
    action(store())
    if done is not None:
        typer.echo(done, err=True)


def keyring(settings: Settings) -> Keyring:
    """The vault's keys, made on first use (with a notice saying where)."""
    notice = ensure_master_key(settings)
    current, previous = master_keys(settings)
    if notice:
        typer.echo(notice, err=True)
    return Keyring(MasterKey(current), [MasterKey(previous)] if previous else [])
