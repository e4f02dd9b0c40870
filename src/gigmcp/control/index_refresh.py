"""The registry index refreshed in the background, so that the catalog shows (and the
rollback floor follows) what the registry publishes without anyone asking.

Every ``GIG_REGISTRY_REFRESH`` seconds, once across replicas (the ``registry-refresh``
background job, store/jobs.py: each replica asks every few seconds, the one that finds
it due fetches), through the same service-layer function as an install
(:func:`installs.refresh_index`: the signature checked before a byte is parsed, a
rollback or a changed generation refused, the accepted generation advanced in the
store). A failure — the registry unreachable, or an index refused — is tried again
sooner, after :func:`backoff` (exponential with jitter, capped at the interval); the
count of failures in a row lives in the job's row, so the delay keeps growing whichever
replica tries next. A refused index leaves everything as it was: the accepted
generation, the copy on disk and the index the catalog browses.

Owns the schedule. It must never accept an index by any other path than
``installs.refresh_index``, never stop the gateway (every failure is logged and tried
again), never run the fetch on the event loop, and never log more of a failure than the
fetcher's own message, which shows the registry's URL without credentials or query.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import Engine

from gigmcp.control import installs
from gigmcp.core import aio
from gigmcp.errors import GigError
from gigmcp.installer.index_fetch import Fetched, RegistrySource
from gigmcp.store import jobs

log = logging.getLogger(__name__)
JOB = "registry-refresh"
FIRST_RETRY_S = 30.0  # the first retry after a failure; doubled each time after


def backoff(
    failures: int,
    interval: float,
    first: float = FIRST_RETRY_S,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after the ``failures``-th failure in a row (1, 2, ...): ``first``,
    doubled each time, capped at ``interval``; jittered to between half of that and all
    of it, so that gateways failing together spread out. Each delay is at least the
    longest the one before could have been, until the cap."""
    ceiling = min(interval, first * 2.0 ** min(max(failures, 1) - 1, 60))
    return ceiling / 2 + rand() * ceiling / 2


def _reason(exc: BaseException) -> str:
    # The tree's messages are written for the operator (the fetcher's show the URL
    # without credentials or query); anything else is named by its type only.
    return str(exc) if isinstance(exc, GigError) else f"unexpected {type(exc).__name__}"


class IndexRefresher:
    """One replica's refresher. ``poll``: how often it asks whether the job is due."""

    def __init__(
        self,
        engine: Engine,
        source: RegistrySource,
        interval: float,
        *,
        first_retry: float = FIRST_RETRY_S,
        poll: float | None = None,
    ) -> None:
        self._engine = engine
        self._source = source
        self.interval = interval
        self.first_retry = first_retry
        self.poll = poll if poll is not None else min(first_retry, interval) / 2
        self.holder = jobs.new_holder()
        self._task: asyncio.Task[None] | None = None
        self.refreshed = 0
        self.failed = 0
        self.delays: list[float] = []  # each retry delay chosen, in order
        self.last: Fetched | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(self.poll)

    async def tick(self) -> str:
        """Ask once: ``refreshed``, ``failed``, or ``idle`` (not due, or another replica
        has it)."""
        every = timedelta(seconds=self.interval)
        try:
            held = await asyncio.to_thread(jobs.claim, self._engine, JOB, self.holder, every)
        except Exception as exc:  # the database: asked again at the next poll
            log.warning("registry refresh: cannot claim the job: %s", type(exc).__name__)
            return "failed"
        if held is None:
            return "idle"
        try:
            fetched = await asyncio.to_thread(installs.refresh_index, self._engine, self._source)
        except asyncio.CancelledError:
            # Stopping: due again at once, for whichever replica asks next.
            await asyncio.shield(asyncio.to_thread(jobs.finish, self._engine, held, timedelta()))
            raise
        except Exception as exc:  # any failure is retried; the gateway goes on
            failures = held.failures + 1
            delay = backoff(failures, self.interval, self.first_retry)
            self.delays.append(delay)
            self.failed += 1
            log.warning("registry index refresh failed (%d in a row; next try in %.1f s): %s",
                        failures, delay, _reason(exc))  # fmt: skip
            await asyncio.to_thread(jobs.finish, self._engine, held, timedelta(seconds=delay))
            return "failed"
        for warning in fetched.warnings:
            log.warning("registry index: %s", warning)
        self.last = fetched
        self.refreshed += 1
        log.info("registry index refreshed: generated %s", fetched.generated.isoformat())
        await asyncio.to_thread(jobs.finish, self._engine, held)
        return "refreshed"

    async def aclose(self) -> None:
        await aio.stop(self._task)
        self._task = None
