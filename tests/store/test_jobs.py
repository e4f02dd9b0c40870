"""Background jobs run once per interval across replicas (store/jobs.py), on both
databases: replicas racing with engines of their own, in threads and in processes, run a
job once; a replica that dies holding a job leaves it to another after the lease; a
failure is counted and tried again when asked. And the attack: a replica whose clock
runs ahead can neither take a held job nor run one early (PostgreSQL, whose clock every
replica shares; SQLite's users share one host and its clock)."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from gigmcp.control import actor, profiles
from gigmcp.store import audit_chain, db, jobs
from gigmcp.store.audit_sealer import PRUNE_JOB, AuditSealer
from gigmcp.store.db import make_engine, migrate
from gigmcp.store.models import BackgroundJob
from gigmcp.vault.keys import Keyring, MasterKey

HOUR = timedelta(hours=1)


@pytest.fixture
def engines(database_url: str) -> Iterator[list[Engine]]:
    """Four replicas' engines on one migrated database."""
    found = [make_engine(database_url) for _ in range(4)]
    migrate(found[0])
    try:
        yield found
    finally:
        for e in found:
            e.dispose()


def _row(engine: Engine, name: str) -> BackgroundJob:
    with Session(engine) as s:
        row = s.scalar(select(BackgroundJob).where(BackgroundJob.name == name))
        assert row is not None
        return row


def _race(engines: list[Engine], work: object) -> list[BaseException]:
    start = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            start.wait()
            work(i)  # type: ignore[operator]
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(engines))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


def test_replicas_claiming_at_once_get_one_claim(engines: list[Engine]) -> None:
    won: list[int] = []

    def claim(i: int) -> None:
        if jobs.claim(engines[i], "prune", f"replica-{i}", HOUR):
            won.append(i)

    assert _race(engines, claim) == []
    assert len(won) == 1
    assert _row(engines[0], "prune").holder == f"replica-{won[0]}"


def test_replicas_polling_run_a_job_once_per_interval(engines: list[Engine]) -> None:
    """Four replicas ask for a 1-second job every 20 ms for 2.5 s: it runs three times
    (at 0, 1 and 2 s), never twice in one second, never two runs at once."""
    runs: list[tuple[int, float]] = []
    running = threading.Lock()
    end = time.monotonic() + 2.5

    def replica(i: int) -> None:
        def work() -> None:
            assert running.acquire(blocking=False), "two runs at once"
            try:
                runs.append((i, time.monotonic()))
                time.sleep(0.05)
            finally:
                running.release()

        while time.monotonic() < end:
            jobs.run_once(engines[i], "refresh", f"replica-{i}", timedelta(seconds=1), work)
            time.sleep(0.02)

    assert _race(engines, replica) == []
    starts = [t for _, t in runs]
    assert len(starts) == 3, runs
    assert all(b - a >= 0.95 for a, b in itertools.pairwise(starts)), starts


def _claimers(url: str, n: int, *args: str) -> list[str]:
    """``n`` processes claiming job ``x`` at the same moment; what each printed."""
    start = time.time() + 3  # past every interpreter's start-up
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.support.job_claimer", url, "x", str(start), *args],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    return [p.communicate(timeout=60)[0].strip() for p in procs]


def test_processes_claiming_at_once_run_the_job_once(database_url: str) -> None:
    """Replicas are processes: each with its own interpreter and engine (on SQLite, two
    processes on one file)."""
    engine = make_engine(database_url)
    try:
        migrate(engine)
        said = _claimers(database_url, 4, "3600", "60")
        assert sorted(said) == ["lost", "lost", "lost", "won"]
        row = _row(engine, "x")
        assert row.holder is None and row.last_finished is not None, "the winner finished"
        assert jobs.claim(engine, "x", "late", HOUR) is None, "not due again for an hour"
    finally:
        engine.dispose()


def test_a_replica_that_dies_holding_a_job_leaves_it_to_another_after_the_lease(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    try:
        migrate(engine)
        # A real process wins, then exits without finishing (a 2-second lease).
        assert _claimers(database_url, 1, "3600", "2", "--die") == ["won"]
        assert _row(engine, "x").holder is not None
        assert jobs.claim(engine, "x", "survivor", HOUR) is None, "held: the lease runs"
        time.sleep(2.2)
        held = jobs.claim(engine, "x", "survivor", HOUR)
        assert held is not None, "the dead holder's lease lapsed: the job is another's"
        assert jobs.finish(engine, held)
        assert jobs.claim(engine, "x", "third", HOUR) is None, "done: not due for an hour"
    finally:
        engine.dispose()


def test_a_holder_whose_lease_lapsed_cannot_finish_over_the_next_one(
    migrated_engine: Engine,
) -> None:
    engine = migrated_engine
    slow = jobs.claim(engine, "x", "slow", HOUR, lease=timedelta(milliseconds=300))
    assert slow is not None
    time.sleep(0.4)
    fast = jobs.claim(engine, "x", "fast", HOUR)
    assert fast is not None
    assert not jobs.finish(engine, slow), "the slow holder lost the lease"
    assert _row(engine, "x").holder == "fast", "and wrote nothing over the new holder's"
    assert jobs.finish(engine, fast)


def test_a_failure_is_counted_and_the_job_is_due_again_when_asked(
    migrated_engine: Engine,
) -> None:
    engine = migrated_engine
    held = jobs.claim(engine, "x", "a", HOUR)
    assert held is not None and held.failures == 0
    assert jobs.finish(engine, held, retry_in=timedelta(milliseconds=200))
    assert jobs.claim(engine, "x", "b", HOUR) is None, "not before the retry"
    time.sleep(0.3)
    again = jobs.claim(engine, "x", "b", HOUR)
    assert again is not None and again.failures == 1, "the count is shared by replicas"
    assert jobs.finish(engine, again)
    assert _row(engine, "x").failures == 0, "a success clears it"

    def fail() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        jobs.run_once(engine, "y", "a", timedelta(milliseconds=200), fail)
    row = _row(engine, "y")
    assert row.failures == 1 and row.holder is None, "recorded, lease freed"


def test_attack_a_replica_whose_clock_runs_ahead_cannot_take_a_held_job(
    postgres_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both the lease and the due time are judged by the database's clock: a replica two
    hours ahead (past the lease and past the interval) takes nothing."""
    engine = postgres_engine
    held = jobs.claim(engine, "prune", "replica-a", HOUR, lease=timedelta(seconds=30))
    assert held is not None
    real = db.utcnow
    monkeypatch.setattr(db, "utcnow", lambda: real() + 2 * HOUR)
    assert jobs.claim(engine, "prune", "replica-b", HOUR) is None, "took a held job"
    assert jobs.finish(engine, held)
    assert jobs.claim(engine, "prune", "replica-b", HOUR) is None, "ran a job early"


def test_replicas_sealers_prune_the_audit_events_once_an_hour(
    engines: list[Engine], database_url: str
) -> None:
    """The audit events' retention through the sealer of each replica: one prune an hour,
    while every sealer still seals and signs."""
    keyring = Keyring(MasterKey(bytes.fromhex("cd" * 32)))
    sealers = [AuditSealer(e, keyring, events_retention_days=1) for e in engines]
    admin = actor.local_admin(engines[0])
    profiles.create_profile(engines[0], admin, "team")  # an audit event, sealed and signed
    asyncio.run(sealers[0].tick(checkpoint=True))

    async def all_ask() -> None:
        await asyncio.gather(*(s.tick(checkpoint=True, prune=True) for s in sealers))

    asyncio.run(all_ask())
    row = _row(engines[0], PRUNE_JOB)
    assert row.holder is None and row.last_finished is not None
    assert row.last_started is not None
    first = row.last_started
    asyncio.run(all_ask())
    assert _row(engines[0], PRUNE_JOB).last_started == first, "not again within the hour"
    assert all(r.ok for r in audit_chain.verify(engines[0], keyring))
