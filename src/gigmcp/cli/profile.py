"""``gigmcp profile``: create, list, show and delete profiles; assign servers to them.

Owns these commands' arguments and output. It must never reach the store but through
the service layer (``control/profiles.py``).
"""

from __future__ import annotations

import typer

from gigmcp.cli.app import act, profile_app, store
from gigmcp.control import profiles


@profile_app.command("create")
def profile_create(slug: str) -> None:
    """Create a profile (slug: 2-63 of a-z, 0-9, '-')."""
    act(lambda st: profiles.create_profile(st.engine, st.actor, slug), f"created profile {slug}")


@profile_app.command("list")
def profile_list() -> None:
    """List profiles and their servers."""
    st = store()
    for p in profiles.list_profiles(st.engine, st.actor):
        typer.echo(f"{p.slug}\t{', '.join(p.servers) or '-'}")


@profile_app.command("delete")
def profile_delete(slug: str) -> None:
    """Delete a profile, its assignments and its tokens."""
    act(lambda st: profiles.delete_profile(st.engine, st.actor, slug), f"deleted profile {slug}")


@profile_app.command("assign")
def profile_assign(
    slug: str,
    server: str,
    tools_off: bool = typer.Option(False, "--tools-off", help="Tools start disabled."),
) -> None:
    """Assign a server to a profile."""
    act(
        lambda st: profiles.assign(st.engine, st.actor, slug, server, not tools_off),
        f"assigned {server} to {slug}",
    )


@profile_app.command("unassign")
def profile_unassign(slug: str, server: str) -> None:
    """Remove a server from a profile."""
    act(
        lambda st: profiles.unassign(st.engine, st.actor, slug, server),
        f"unassigned {server} from {slug}",
    )


@profile_app.command("show")
def profile_show(slug: str) -> None:
    """Show a profile's servers and tool selections."""
    st = store()
    p = profiles.show_profile(st.engine, st.actor, slug)
    typer.echo(f"profile {p.slug} (endpoint /mcp/p/{p.slug})")
    for a in p.assignments:
        default = "on" if a.default_enabled else "off"
        typer.echo(f"  {a.server}: tools {default} by default")
        for t in a.tools:
            typer.echo(f"    {t.tool}: {'enabled' if t.enabled else 'disabled'}")
