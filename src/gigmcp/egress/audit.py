"""The egress proxy's audit trail: one row per request, written in batches.

Owns the :class:`EgressEvent` record and a writer that queues events on the event loop
and inserts them from a worker thread once a second (and at close), so the proxy never
waits on the database. It must never record a query string, a header value or a
credential value: the path is cut at '?', the credential is named by its id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime

from sqlalchemy import Engine, insert

from gigmcp.store.models import EgressAuditRow, utcnow

log = logging.getLogger(__name__)
FLUSH_INTERVAL_S = 1.0
MAX_QUEUE = 100_000  # past this, events are counted as dropped rather than eat memory


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
    at: datetime = field(default_factory=utcnow)


def audit_path(target: str) -> str:
    """The path of a request target, without its query or fragment, bounded."""
    path = target.split("?", 1)[0].split("#", 1)[0]
    if "://" in path:  # absolute-form: keep only the path
        rest = path.split("://", 1)[1]
        path = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    return path[:1024]


class EgressAudit:
    def __init__(self, engine: Engine | None) -> None:
        self._engine = engine
        self._queue: list[EgressEvent] = []
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.written = 0

    def record(self, event: EgressEvent) -> None:
        if len(self._queue) >= MAX_QUEUE:
            self.dropped += 1
            return
        self._queue.append(event)

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            await self.flush()

    async def flush(self) -> None:
        batch, self._queue = self._queue, []
        if not batch or self._engine is None:
            return
        try:
            await asyncio.to_thread(self._write, batch)
            self.written += len(batch)
        except Exception:
            log.exception("cannot write %d egress audit rows", len(batch))
            self.dropped += len(batch)

    def _write(self, batch: list[EgressEvent]) -> None:
        assert self._engine is not None
        with self._engine.begin() as conn:
            conn.execute(insert(EgressAuditRow), [asdict(e) for e in batch])

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
