"""The gateway's snapshot of the store follows every change the CLI makes, at once."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect, update
from sqlalchemy.orm import Session

from gigmcp.control import actor, profiles, servers, tokens, tools
from gigmcp.core.views import AuditEvent
from gigmcp.errors import GigError
from gigmcp.store.catalog import StoreCatalog
from gigmcp.store.models import ProfileToken


@pytest.fixture
def cat(database_url: str) -> Iterator[StoreCatalog]:
    catalog = StoreCatalog(database_url)
    yield catalog
    catalog.engine.dispose()


def setup(cat: StoreCatalog) -> tuple[int, str]:
    me = actor.local_admin(cat.engine)
    profiles.create_profile(cat.engine, me, "p1")
    servers.add_server(cat.engine, me, "srv", ["true"], {"A": "1"}, ["KEY"], None)
    profiles.assign(cat.engine, me, "p1", "srv", True)
    return me, tokens.mint_token(cat.engine, me, "p1", "t", None)


def test_migrations_build_the_schema_from_nothing(cat: StoreCatalog) -> None:
    names = set(inspect(cat.engine).get_table_names())
    assert {
        "users",
        "profiles",
        "servers",
        "profile_servers",
        "profile_tools",
        "profile_tokens",
        "audit_events",
        "config_revision",
        "alembic_version",
    } <= names


def test_snapshot_holds_profiles_and_grants(cat: StoreCatalog) -> None:
    _, token = setup(cat)
    grant = cat.authenticate(token)
    assert grant is not None and grant.profile_slug == "p1"
    view = cat.profile(grant.profile_id)
    assert view is not None and view.assignments[0].server.name == "srv"
    assert view.assignments[0].server.env == (("A", "1"),)
    assert cat.authenticate(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert cat.authenticate("not-a-token") is None


def test_tool_selection_and_identity_of_unchanged_views(cat: StoreCatalog) -> None:
    me, token = setup(cat)
    grant = cat.authenticate(token)
    assert grant is not None
    before = cat.profile(grant.profile_id)
    profiles.create_profile(cat.engine, me, "other")
    cat.authenticate(token)
    assert cat.profile(grant.profile_id) is before  # unchanged profile, same object
    tools.set_tool(cat.engine, me, "p1", "srv", "danger", False)
    cat.authenticate(token)
    view = cat.profile(grant.profile_id)
    assert view is not before and view is not None
    assert not view.assignments[0].tool_enabled("danger") and view.assignments[0].tool_enabled(
        "safe"
    )


def test_revocation_by_another_process_applies_on_the_next_request(
    cat: StoreCatalog, tmp_path: Path
) -> None:
    _, token = setup(cat)
    grant = cat.authenticate(token)
    assert grant is not None
    code = (
        "from gigmcp.control import actor, tokens; from gigmcp.store.db import make_engine;"
        f"e = make_engine({cat.engine.url.render_as_string(hide_password=False)!r});"
        f"tokens.revoke_token(e, actor.local_admin(e), {grant.token_id})"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert cat.authenticate(token) is None


def test_expired_tokens_open_nothing(cat: StoreCatalog) -> None:
    me, _ = setup(cat)
    token = tokens.mint_token(cat.engine, me, "p1", None, timedelta(minutes=5))
    # Five minutes on: the token has expired (the row says so; a lifetime of zero or
    # less is refused when minting).
    with Session(cat.engine) as s, s.begin():
        s.execute(update(ProfileToken).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert cat.authenticate(token) is None


def test_bad_input_is_refused_and_writes_nothing(cat: StoreCatalog) -> None:
    me, _ = setup(cat)
    rev = cat.revision()
    for call in (
        lambda: profiles.create_profile(cat.engine, me, "Bad_Slug"),
        lambda: profiles.create_profile(cat.engine, me, "p1"),
        lambda: servers.add_server(cat.engine, me, "with_underscore", ["x"], {}, [], None),
        lambda: servers.add_server(cat.engine, me, "noenv", ["x"], {"1BAD": "v"}, [], None),
        lambda: profiles.assign(cat.engine, me, "nope", "srv", True),
        lambda: tokens.revoke_token(cat.engine, me, 999),
        lambda: tokens.parse_duration("forever"),
    ):
        with pytest.raises(GigError):
            call()
    assert cat.revision() == rev


def test_token_is_never_in_the_database_files(cat: StoreCatalog, tmp_path: Path) -> None:
    _, token = setup(cat)
    if cat.engine.dialect.name == "postgresql":
        with cat.engine.connect() as conn:
            conn.exec_driver_sql("CHECKPOINT")  # tables and WAL on disk
            data_dir = conn.exec_driver_sql("SHOW data_directory").scalar()
        files = [p for p in Path(str(data_dir)).rglob("*") if p.is_file()]
    else:
        cat.engine.dispose()
        files = list(tmp_path.glob("g.db*"))
    assert files
    for path in files:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue  # a cache file PostgreSQL removed while we walked (pg_internal.init)
        assert token.encode() not in data, path


async def test_audit_rows_are_batched_and_none_lost_at_close(cat: StoreCatalog) -> None:
    setup(cat)
    await cat.start()
    for i in range(500):
        cat.record(
            AuditEvent(action="tools/call", outcome="ok", server="srv", tool=f"t{i}", arg_bytes=i)
        )
    await cat.aclose()
    fresh = StoreCatalog(str(cat.engine.url))
    with fresh.engine.connect() as conn:
        n = conn.exec_driver_sql(
            "SELECT count(*) FROM audit_events WHERE action='tools/call'"
        ).scalar()
    assert n == 500
