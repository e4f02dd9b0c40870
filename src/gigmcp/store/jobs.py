"""Periodic background work that must run once per interval across every replica (the
audit retention prunes, the registry index refresh), coordinated by a database lock.

Each job is one ``background_jobs`` row. :func:`claim` takes it by a conditional UPDATE
that matches only while the job is due (``due_at`` passed, or never run) and its lease
is free or lapsed, so of any number of replicas (or processes on one SQLite file)
exactly one gets a row count of one; it sets the lease, ``last_started`` and the next
``due_at`` in the same statement. Time is judged by ``db.clock`` — the database's clock
on PostgreSQL, the same rule as the connected-account refresh lease (``oauth.py``) — so
a replica whose clock runs ahead can neither take a held lease nor run a job early. The
holder runs the job outside any transaction and calls :func:`finish`, which frees the
lease only if it still holds it; a failure sets when to try again and counts the
failures in a row, so the backoff is shared by whichever replica tries next. A holder
that died leaves its lease to lapse: the job, unfinished, is then due at once for
another replica.

A run that outlives its lease may overlap the next holder's: jobs must be idempotent
(deleting what is old, fetching what is current), and a lease is set well above a run's
expected length.

Owns these rows. It must never run a job itself, hold a transaction open while a job
runs, or let a holder that lost its lease overwrite the next holder's state.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from sqlalchemy import Engine, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from gigmcp.store.db import clock
from gigmcp.store.models import BackgroundJob

T = TypeVar("T")
# Well above any run (a prune of a large table, a registry fetch's 120 s deadline): a
# lease that lapses mid-run lets a second replica start the same job.
DEFAULT_LEASE = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Claim:
    """A job this holder runs now; ``failures``: runs in a row that failed before it."""

    name: str
    holder: str
    failures: int


def new_holder() -> str:
    """A holder name for one gateway process: its host and pid (for an operator reading
    the table), and a random part (two gateways in one process, a reused pid)."""
    return f"{socket.gethostname()[:24]}:{os.getpid()}:{secrets.token_hex(4)}"


def claim(
    engine: Engine, name: str, holder: str, every: timedelta, lease: timedelta = DEFAULT_LEASE
) -> Claim | None:
    """Take job ``name`` if it is due: a :class:`Claim` for exactly one claimant, the
    next one due ``every`` after this start; None while it is held or not due."""
    now = clock(engine)
    with Session(engine) as s, s.begin():
        # The row is made on first use: jobs need no migration of their own.
        dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
        s.execute(
            dialect.insert(BackgroundJob).values(name=name, failures=0).on_conflict_do_nothing()
        )
        result = s.execute(
            update(BackgroundJob)
            .where(
                BackgroundJob.name == name,
                or_(BackgroundJob.lease_until.is_(None), BackgroundJob.lease_until < now),
                # Due, or left unfinished by a holder whose lease lapsed (it died).
                or_(
                    BackgroundJob.holder.is_not(None),
                    BackgroundJob.due_at.is_(None),
                    BackgroundJob.due_at <= now,
                ),
            )
            .values(holder=holder, lease_until=now + lease, last_started=now, due_at=now + every)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None
        failures = s.scalar(select(BackgroundJob.failures).where(BackgroundJob.name == name))
        return Claim(name, holder, int(failures or 0))


def finish(engine: Engine, held: Claim, retry_in: timedelta | None = None) -> bool:
    """End a run and free its lease: a success (``retry_in`` None) keeps the due time set
    at the claim and clears the failures; a failure makes the job due again in
    ``retry_in`` and counts it. False when the lease was lost (another holder took the
    job after it lapsed): nothing is written over that holder's state."""
    now = clock(engine)
    values: dict[str, object] = {"holder": None, "lease_until": None, "last_finished": now}
    if retry_in is None:
        values["failures"] = 0
    else:
        values["failures"] = BackgroundJob.failures + 1
        values["due_at"] = now + retry_in
    with Session(engine) as s, s.begin():
        result = s.execute(
            update(BackgroundJob)
            .where(BackgroundJob.name == held.name, BackgroundJob.holder == held.holder)
            .values(**values)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def run_once(
    engine: Engine,
    name: str,
    holder: str,
    every: timedelta,
    work: Callable[[], T],
    lease: timedelta = DEFAULT_LEASE,
) -> T | None:
    """Run ``work`` if job ``name`` is due and this holder wins it (its result), else
    None. A failed run is raised after it is recorded; it is due again after ``every``
    (the jobs that use this, the prunes, simply try again at their next interval)."""
    held = claim(engine, name, holder, every, lease)
    if held is None:
        return None
    try:
        result = work()
    except BaseException:
        finish(engine, held, retry_in=every)
        raise
    finish(engine, held)
    return result
