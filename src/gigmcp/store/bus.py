"""The replicas' message bus: PostgreSQL's LISTEN/NOTIFY, nothing else to run.

Replicas of one deployment share a PostgreSQL database and nothing else, so that is
where they talk: a configuration change is announced on ``gigmcp_config`` once it has
committed (control/rows.py; so a replica never hears of a change it cannot read yet,
and a change never fails for want of an announcement), and requests one replica hands another
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
from psycopg.conninfo import make_conninfo
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from gigmcp.core import aio
from gigmcp.errors import GigError

log = logging.getLogger(__name__)

CONFIG_CHANNEL = "gigmcp_config"
# What fits one NOTIFY payload with room to spare (PostgreSQL's limit: 8,000 bytes).
PAYLOAD_CHARS = 7000
_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)
# No wait on the database is unbounded: a connection that does not answer within these
# is taken to be dead (a half-open TCP connection would otherwise hold every relay).
SEND_TIMEOUT_S = 5.0
HEALTH_EVERY_S = 10.0
_CONNECT = {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 10,
            "keepalives_interval": 5, "keepalives_count": 3}  # fmt: skip


class BusError(GigError):
    """The database could not carry a notification (unreachable, connection lost)."""


def conninfo(database_url: str) -> str | None:
    """psycopg's connection string for a PostgreSQL database URL; None for SQLite,
    which has no notifications (one replica per SQLite file)."""
    url = make_url(database_url)
    if not url.drivername.startswith("postgresql"):
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def announce_change(engine: Engine) -> None:
    """Tell the other replicas that the configuration moved, after the change committed
    (nothing on SQLite: one replica, which reads its own revision). A courtesy, never a
    condition: any role that can log in can jam PostgreSQL's notification queue, and a
    revocation must commit all the same; the replicas' polling then finds it (5 s)."""
    if engine.dialect.name != "postgresql":
        return
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CONFIG_CHANNEL})
    except SQLAlchemyError as err:
        log.warning("could not announce a change to the replicas (%s): they will poll for it",
                    type(err).__name__)  # fmt: skip


class Bus:
    def __init__(self, dsn: str) -> None:
        self._dsn = make_conninfo(dsn, **_CONNECT)
        self._callbacks: dict[str, Callable[[str], None]] = {}
        # Called after every (re)connection: whatever was announced while no one
        # listened is lost, so listeners catch up by reading the store.
        self.on_connect: list[Callable[[], None]] = []
        self._listener: asyncio.Task[None] | None = None
        # Two senders: one message in one piece (acknowledgements, beats, most answers)
        # never waits behind a large one being sent in many.
        self._senders: dict[str, psycopg.AsyncConnection[tuple[object, ...]] | None] = {
            "small": None, "large": None}  # fmt: skip
        self._locks = {"small": asyncio.Lock(), "large": asyncio.Lock()}
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
                    while True:
                        async for note in conn.notifies(timeout=HEALTH_EVERY_S):
                            callback = self._callbacks.get(note.channel)
                            if callback is not None:
                                try:
                                    callback(note.payload)
                                except Exception:
                                    log.exception("bus: handling a notification failed")
                        # Quiet for a while: is the connection still there? A dead one
                        # would look connected and hear nothing, forever.
                        async with asyncio.timeout(SEND_TIMEOUT_S):
                            await conn.execute("SELECT 1")
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
        lane = "small" if len(payloads) == 1 else "large"
        async with self._locks[lane]:
            for attempt in range(2):
                try:
                    async with asyncio.timeout(SEND_TIMEOUT_S):
                        conn = self._senders[lane]
                        if conn is None or conn.closed:
                            conn = await psycopg.AsyncConnection.connect(self._dsn)
                            self._senders[lane] = conn
                        async with conn.transaction(), conn.cursor() as cur:
                            await cur.executemany(
                                "SELECT pg_notify(%s, %s)", [(channel, p) for p in payloads]
                            )
                    return
                except (psycopg.Error, TimeoutError) as err:
                    # A connection the server dropped, or one that stopped answering:
                    # one fresh try, then the error (its type only: psycopg's messages
                    # may name the server).
                    dead, self._senders[lane] = self._senders[lane], None
                    if dead is not None:
                        with contextlib.suppress(Exception):
                            await dead.close()
                    if attempt:
                        raise BusError(
                            f"the database bus is unreachable ({type(err).__name__})"
                        ) from None

    async def aclose(self) -> None:
        self._closing = True
        await aio.stop(self._listener)
        self._listener = None
        for lane, conn in list(self._senders.items()):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
            self._senders[lane] = None
        self._connected.clear()
