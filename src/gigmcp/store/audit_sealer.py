"""The background side of the audit chains (store/audit_chain.py): seal every second,
sign a checkpoint every minute (and at shutdown), and age out old rows once an hour
across all replicas.

Owns the schedule and nothing else; every database step runs in a worker thread, so
the event loop never waits on the database. It must never stop the gateway: a failed
step is logged and tried again at the next tick. Several replicas may run one each:
sealing takes the chain head's lock, a checkpoint of a head already signed is skipped,
and pruning is a background job (store/jobs.py): each replica asks every minute, one
runs it once an hour; it deletes only what a checkpoint vouches for.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from gigmcp.core import aio
from gigmcp.store import audit_chain, jobs
from gigmcp.vault.keys import Keyring

log = logging.getLogger(__name__)
SEAL_INTERVAL_S = 1.0
CHECKPOINT_INTERVAL_S = 60.0
PRUNE_INTERVAL_S = 3600.0
PRUNE_JOB = "audit-events-prune"


class AuditSealer:
    def __init__(
        self, engine: Engine, keyring: Keyring | None, events_retention_days: int | None
    ) -> None:
        self._engine = engine
        self._keyring = keyring
        self._retention = timedelta(days=events_retention_days) if events_retention_days else None
        self._task: asyncio.Task[None] | None = None
        self.holder = jobs.new_holder()
        self.sealed = 0

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        since_checkpoint = 0.0
        while True:
            await asyncio.sleep(SEAL_INTERVAL_S)
            since_checkpoint += SEAL_INTERVAL_S
            # The prune is asked for every minute and runs when it is due: hourly,
            # wherever a replica first finds it due (a replica started later, or one
            # left alone when another stops, still keeps the hour).
            due = since_checkpoint >= CHECKPOINT_INTERVAL_S
            await self.tick(checkpoint=due, prune=due)
            if due:
                since_checkpoint = 0.0

    async def tick(self, checkpoint: bool = False, prune: bool = False) -> None:
        try:
            self.sealed += await asyncio.to_thread(audit_chain.seal_all, self._engine)
            if checkpoint and self._keyring is not None:
                await asyncio.to_thread(audit_chain.checkpoint, self._engine, self._keyring)
            if prune and self._retention is not None:
                await asyncio.to_thread(self._prune_if_due, datetime.now(UTC) - self._retention)
        except Exception:
            log.exception("audit chain: sealing failed; tried again in a second")

    def _prune_if_due(self, cutoff: datetime) -> int | None:
        every = timedelta(seconds=PRUNE_INTERVAL_S)
        prune = functools.partial(audit_chain.prune, self._engine, "events", cutoff)
        return jobs.run_once(self._engine, PRUNE_JOB, self.holder, every, prune)

    async def aclose(self) -> None:
        """Stop, then seal and sign what is left (called after every writer flushed)."""
        await aio.stop(self._task)
        self._task = None
        await self.tick(checkpoint=True)
