"""Upgrades run the migrations once, however many replicas (or a replica and the
command line) start at the same moment: the others wait, then find the schema at the
head and do nothing. On both databases, with several real processes' worth of engines
racing on an empty database."""

from __future__ import annotations

import threading

from sqlalchemy import inspect, text

from gigmcp.store.db import make_engine, migrate


def test_replicas_starting_together_migrate_once(database_url: str) -> None:
    engines = [make_engine(database_url) for _ in range(4)]
    start = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            start.wait()
            migrate(engines[i])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(engines))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        assert errors == [], [f"{type(e).__name__}: {str(e)[:300]}" for e in errors]
        with engines[0].connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).fetchall()
        assert len(versions) == 1
        assert "audit_checkpoints" in inspect(engines[0]).get_table_names()
    finally:
        for e in engines:
            e.dispose()
