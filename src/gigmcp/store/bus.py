"""The replicas' message bus: PostgreSQL's LISTEN/NOTIFY, nothing else to run.

Replicas of one deployment share a PostgreSQL database and nothing else, so that is
where they talk: a configuration change is announced on ``gigmcp_config`` in the
transaction that makes it (control/rows.py; delivered at commit, so a replica never
hears of a change it cannot read yet), and requests one replica hands another
(endpoint/relay.py) travel on each replica's own channel. A payload is at most 7,000
characters here (PostgreSQL's limit is 8,000 bytes); callers split longer messages and
send the pieces in one transaction, which PostgreSQL delivers together and in order.

Owns the two connections (one listening, one sending), reconnecting with backoff, and
handing each notification to its channel's callback on the event loop. It never reads
or writes a table, never logs a payload (callers seal what they send), and never
blocks the event loop: psycopg's async connections do the waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

import psycopg
from psycopg import sql
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from gigmcp.errors import GigError

log = logging.getLogger(__name__)

CONFIG_CHANNEL = "gigmcp_config"
# What fits one NOTIFY payload with room to spare (PostgreSQL's limit: 8,000 bytes).
PAYLOAD_CHARS = 7000
_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)


class BusError(GigError):
    """The database could not carry a notification (unreachable, connection lost)."""


def conninfo(database_url: str) -> str | None:
    """psycopg's connection string for a PostgreSQL database URL; None for SQLite,
    which has no notifications (one replica per SQLite file)."""
    url = make_url(database_url)
    if not url.drivername.startswith("postgresql"):
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def announce_change(session: Session) -> None:
    """Tell the other replicas, at this transaction's commit, that the configuration
    moved (nothing on SQLite: one replica, which polls its own revision)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CONFIG_CHANNEL})


class Bus:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._callbacks: dict[str, Callable[[str], None]] = {}
        # Called after every (re)connection: whatever was announced while no one
        # listened is lost, so listeners catch up by reading the store.
        self.on_connect: list[Callable[[], None]] = []
        self._listener: asyncio.Task[None] | None = None
        self._sender: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._send_lock = asyncio.Lock()
        self._connected = asyncio.Event()
        self._closing = False

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def on(self, channel: str, callback: Callable[[str], None]) -> None:
        """Call ``callback(payload)`` on the event loop for each notification on
        ``channel``; register before :meth:`start`."""
        if self._listener is not None:
            raise RuntimeError("register channels before the bus starts")
        self._callbacks[channel] = callback

    async def start(self, wait: float = 10.0) -> None:
        """Start listening; returns once listening (or after ``wait`` seconds, the
        bus going on trying in the background: replicas fall back to polling)."""
        self._listener = asyncio.get_running_loop().create_task(self._listen())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), wait)

    async def _listen(self) -> None:
        attempt = 0
        while not self._closing:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._dsn, autocommit=True
                ) as conn:
                    for channel in self._callbacks:
                        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    attempt = 0
                    self._connected.set()
                    self._caught_up()
                    async for note in conn.notifies():
                        callback = self._callbacks.get(note.channel)
                        if callback is not None:
                            try:
                                callback(note.payload)
                            except Exception:
                                log.exception("bus: handling a notification failed")
            except asyncio.CancelledError:
                raise
            except Exception as err:
                # The error names the server, never a password (psycopg masks it).
                log.warning("bus: listening connection lost (%s); retrying", type(err).__name__)
            self._connected.clear()
            await asyncio.sleep(_BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)])
            attempt += 1

    def _caught_up(self) -> None:
        for hook in self.on_connect:
            try:
                hook()
            except Exception:
                log.exception("bus: a connect hook failed")

    async def send(self, channel: str, payloads: Sequence[str]) -> None:
        """Notify ``channel`` of each payload, in one transaction: all arrive, in
        order, or none. Raises :class:`BusError` when the database cannot be reached."""
        if any(len(p) > PAYLOAD_CHARS for p in payloads):
            raise ValueError(f"a bus payload is at most {PAYLOAD_CHARS} characters")
        async with self._send_lock:
            for attempt in range(2):
                try:
                    conn = self._sender
                    if conn is None or conn.closed:
                        conn = self._sender = await psycopg.AsyncConnection.connect(self._dsn)
                    async with conn.transaction(), conn.cursor() as cur:
                        await cur.executemany(
                            "SELECT pg_notify(%s, %s)", [(channel, p) for p in payloads]
                        )
                    return
                except psycopg.Error as err:
                    # A connection the server dropped: one fresh try, then the error
                    # (its type only: psycopg's messages may name the server).
                    if self._sender is not None:
                        with contextlib.suppress(Exception):
                            await self._sender.close()
                    self._sender = None
                    if attempt:
                        raise BusError(
                            f"the database bus is unreachable ({type(err).__name__})"
                        ) from None

    async def aclose(self) -> None:
        self._closing = True
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._sender is not None:
            with contextlib.suppress(Exception):
                await self._sender.close()
            self._sender = None
        self._connected.clear()
