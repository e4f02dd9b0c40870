"""The models and the migrations describe one schema: a database migrated to the head
has exactly the tables, columns, indexes and keys that store/models.py declares, on
both databases. A model changed without a migration (or the reverse) fails here, not
on an operator's upgrade."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gigmcp.store.db import make_engine, migrate
from gigmcp.store.models import Base


def test_a_migrated_database_matches_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate(engine)
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], "models and migrations disagree:\n" + "\n".join(map(str, diff))
