"""The egress proxy's audit trail: one row per request, written in batches.

Owns the :class:`EgressEvent` record and a writer that queues events on the event loop
and has them inserted from a worker thread (by ``store/egress_audit.py``) once a second
and at close, so the proxy never waits on the database; and the trail's bounds: at most
``MAX_QUEUE`` events wait (past it they are counted as dropped, and the count is
logged), and rows older than the retention are deleted once an hour across all replicas
(a background job, store/jobs.py, that each replica asks for every minute; up to the
newest signed checkpoint among them: the audit chain still verifies). A row may stand
for many events (``count``: the sandbox resolver folds its refusals into one row per
instance and interval). It must never record a query string, a header value or a
credential value: the path is cut at '?', the credential is named by its id.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from gigmcp.core import aio
from gigmcp.store import audit_chain, jobs
from gigmcp.store import egress_audit as audit_rows

log = logging.getLogger(__name__)
FLUSH_INTERVAL_S = 1.0
# Past this, events are counted as dropped rather than eat memory: a second's worth of
# requests from many busy instances (DNS refusals arrive aggregated).
MAX_QUEUE = 10_000
PRUNE_INTERVAL_S = 3600.0
PRUNE_ASK_S = 60.0  # how often a replica asks whether the hourly prune is due
PRUNE_JOB = "egress-audit-prune"
DEFAULT_RETENTION_DAYS = 30


@dataclass(slots=True)
class EgressEvent:
    source_ip: str
    decision: str  # allowed | denied | error
    reason: str
    owner_id: int | None = None
    profile_id: int | None = None
    server: str | None = None
    instance: str | None = None
    method: str | None = None
    scheme: str | None = None
    host: str | None = None
    port: int | None = None
    path: str | None = None
    status: int | None = None
    bytes_out: int = 0
    bytes_in: int = 0
    duration_ms: float | None = None
    credential: str | None = None
    count: int = 1  # how many events this row stands for
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


def audit_path(target: str) -> str:
    """The path of a request target, without its query or fragment, bounded."""
    path = target.split("?", 1)[0].split("#", 1)[0]
    if "://" in path:  # absolute-form: keep only the path
        rest = path.split("://", 1)[1]
        path = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    return path[:1024]


class EgressAudit:
    def __init__(self, engine: Engine | None, retention_days: int = DEFAULT_RETENTION_DAYS) -> None:
        self._engine = engine
        self._retention = timedelta(days=retention_days)
        self._queue: list[EgressEvent] = []
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self._dropped_logged = 0
        self.written = 0
        self.pruned = 0
        self.holder = jobs.new_holder()

    def record(self, event: EgressEvent) -> None:
        if len(self._queue) >= MAX_QUEUE:
            self.dropped += 1
            return
        self._queue.append(event)

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        await self.prune(if_due=True)
        since_prune = 0.0
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            await self.flush()
            since_prune += FLUSH_INTERVAL_S
            if since_prune >= PRUNE_ASK_S:
                since_prune = 0.0
                await self.prune(if_due=True)

    async def flush(self) -> None:
        if self.dropped > self._dropped_logged:
            log.warning(
                "egress audit: %d events dropped (more than %d waiting to be written)",
                self.dropped - self._dropped_logged,
                MAX_QUEUE,
            )
            self._dropped_logged = self.dropped
        batch, self._queue = self._queue, []
        if not batch or self._engine is None:
            return
        try:
            await asyncio.to_thread(self._write, batch)
            self.written += len(batch)
        except Exception:
            log.exception("cannot write %d egress audit rows", len(batch))
            self.dropped += len(batch)
            self._dropped_logged = self.dropped

    def _write(self, batch: list[EgressEvent]) -> None:
        assert self._engine is not None
        audit_rows.insert_rows(self._engine, [asdict(e) for e in batch])

    async def prune(self, if_due: bool = False) -> None:
        """Delete the rows older than the retention: now, or with ``if_due`` only when
        the hourly job is due and this replica is the one that wins it."""
        if self._engine is None:
            return
        try:
            cutoff = datetime.now(UTC) - self._retention
            deleted = await asyncio.to_thread(self._prune, cutoff, if_due)
            self.pruned += deleted or 0  # None: not due, or another replica's turn
        except Exception:
            log.exception("cannot delete old egress audit rows")

    def _prune(self, before: datetime, if_due: bool) -> int | None:
        # Only up to a signed checkpoint: the rows left still verify (store/audit_chain.py).
        assert self._engine is not None
        prune = functools.partial(audit_chain.prune, self._engine, "egress", before)
        if not if_due:
            return prune()
        every = timedelta(seconds=PRUNE_INTERVAL_S)
        return jobs.run_once(self._engine, PRUNE_JOB, self.holder, every, prune)

    async def aclose(self) -> None:
        await aio.stop(self._task)
        await self.flush()
