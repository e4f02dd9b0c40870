"""A change's announcement to the replicas (PostgreSQL's NOTIFY) is a courtesy, never a
condition: when it cannot be made, the change still commits, above all a revocation.

Any role that can log in to the cluster can fill PostgreSQL's notification queue (by
LISTENing in a transaction left open while notifications pile up), and then every
transaction that NOTIFYs fails at commit. Here a database whose ``pg_notify`` always
fails stands for that: a function of that name earlier on the search path."""

from __future__ import annotations

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from gigmcp.control import actor, profiles, servers, tokens
from gigmcp.store.models import ProfileToken


def _notify_fails(engine: Engine) -> None:
    with engine.begin() as c:
        c.execute(text("CREATE SCHEMA IF NOT EXISTS jammed"))
        c.execute(
            text(
                "CREATE FUNCTION jammed.pg_notify(text, text) RETURNS void LANGUAGE plpgsql "
                "AS $$ BEGIN RAISE EXCEPTION 'too many notifications in the NOTIFY queue'; "
                "END $$"
            )
        )
        name = c.execute(text("SELECT current_database()")).scalar_one()
        c.execute(text(f'ALTER DATABASE "{name}" SET search_path = jammed, pg_catalog, public'))
    engine.dispose()  # new connections take the database's search path


def test_attack_a_jammed_notification_queue_does_not_stop_a_revocation(
    postgres_engine: Engine,
) -> None:
    engine = postgres_engine
    admin = actor.local_admin(engine)
    profiles.create_profile(engine, admin, "pp")
    servers.add_server(engine, admin, "ss", ["/bin/true"], {}, [], None)
    tokens.mint_token(engine, admin, "pp", "laptop", None)
    (token,) = tokens.list_tokens(engine, admin)
    _notify_fails(engine)
    tokens.revoke_token(engine, admin, token.id)
    with Session(engine) as s:
        revoked = s.scalars(select(ProfileToken.revoked_at).where(ProfileToken.id == token.id))
        assert revoked.one() is not None
