"""The egress trail's hourly prune is a background job (store/jobs.py): of several
replicas, each with its own writer and engine, asking at the same moment, one deletes
the old rows and the others do nothing until the next hour; asked directly (as the
tests and an operator's tools do), it prunes at once. On both databases."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from gigmcp.egress.audit import PRUNE_JOB, EgressAudit, EgressEvent
from gigmcp.store import audit_chain
from gigmcp.store.db import make_engine
from gigmcp.store.models import BackgroundJob, EgressAuditRow, utcnow
from gigmcp.vault.keys import Keyring, MasterKey

KEYRING = Keyring(MasterKey(bytes(range(32))))


def _count(engine: Engine) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(EgressAuditRow)) or 0


async def _old_rows(audit: EgressAudit, engine: Engine, n: int) -> None:
    now = utcnow()
    for i in range(n):
        audit.record(EgressEvent("10.0.0.2", "denied", f"old{i}", at=now - timedelta(days=40)))
    await audit.flush()
    audit_chain.seal_all(engine)
    audit_chain.checkpoint(engine, KEYRING)  # vouches for where retention will cut


async def test_replicas_prune_the_egress_trail_once_an_hour(
    migrated_engine: Engine, database_url: str
) -> None:
    replicas = [EgressAudit(make_engine(database_url), retention_days=30) for _ in range(3)]
    try:
        await _old_rows(replicas[0], migrated_engine, 4)
        await asyncio.gather(*(r.prune(if_due=True) for r in replicas))
        assert sorted(r.pruned for r in replicas) == [0, 0, 4], "one replica pruned"
        assert _count(migrated_engine) == 0
        with Session(migrated_engine) as s:
            row = s.scalar(select(BackgroundJob).where(BackgroundJob.name == PRUNE_JOB))
            assert row is not None and row.holder is None and row.last_finished is not None
        # New old rows within the hour: the job is not due; a direct prune runs anyway.
        await _old_rows(replicas[1], migrated_engine, 2)
        await asyncio.gather(*(r.prune(if_due=True) for r in replicas))
        assert sum(r.pruned for r in replicas) == 4 and _count(migrated_engine) == 2
        await replicas[2].prune()
        assert sum(r.pruned for r in replicas) == 6 and _count(migrated_engine) == 0
    finally:
        for r in replicas:
            assert r._engine is not None
            r._engine.dispose()
