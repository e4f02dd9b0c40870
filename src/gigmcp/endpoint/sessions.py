"""Stateful sessions for legacy clients (2024-11-05 … 2025-11-25 over Streamable HTTP).

Owns session ids (CSPRNG, bound to the token that created them), the standalone GET
stream, the replay buffer behind ``Last-Event-ID``, in-flight client requests (for
``notifications/cancelled``) and server→client requests waiting for the client's answer.
It must never let a session be used with another token and never grow without bound:
idle sessions expire and buffers are capped.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from gigmcp.endpoint import sse
from gigmcp.mcp import versions as v
from gigmcp.mcp.jsonrpc import dumps

JSON = dict[str, Any]
REPLAY_EVENTS = 512
QUEUE_LIMIT = 1024


@dataclass(eq=False)
class ReplayStream:
    """One SSE stream of a session whose events can be replayed after a reconnect."""

    session: LegacySession
    stream_id: int
    seq: int = 0
    done: bool = False
    # A reconnected GET that took this stream over; events go there live.
    follower: asyncio.Queue[bytes | None] | None = None

    def record(self, data: bytes) -> bytes:
        self.seq += 1
        event_id = f"{self.stream_id}-{self.seq}"
        frame = sse.event(data, event_id)
        self.session.replay.append((self.stream_id, self.seq, frame))
        if self.follower is not None:
            self.follower.put_nowait(frame)
        return frame

    def finish(self) -> None:
        self.done = True
        if self.follower is not None:
            self.follower.put_nowait(None)


@dataclass(eq=False)
class LegacySession:
    id: str
    profile_id: int
    token_id: int
    protocol_version: str
    client_capabilities: JSON
    client_info: JSON | None
    log_level: str | None = None
    subscriptions: set[str] = field(default_factory=set)
    last_seen: float = field(default_factory=time.monotonic)
    inflight: dict[Any, asyncio.Task[Any]] = field(default_factory=dict)
    replay: deque[tuple[int, int, bytes]] = field(
        default_factory=lambda: deque(maxlen=REPLAY_EVENTS)
    )
    streams: dict[int, ReplayStream] = field(default_factory=dict)
    standalone: asyncio.Queue[bytes | None] | None = None
    standalone_stream: ReplayStream | None = None
    _asks: dict[str, asyncio.Future[JSON]] = field(default_factory=dict)
    _ask_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _stream_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    closed: bool = False

    @property
    def resumable(self) -> bool:
        return v.has_resumability(self.protocol_version)

    # ------------------------------------------------------------ replayable streams

    def new_stream(self) -> ReplayStream | None:
        if not self.resumable:
            return None
        stream = ReplayStream(self, next(self._stream_ids))
        self.streams[stream.stream_id] = stream
        if len(self.streams) > 64:  # forget finished streams beyond a bound
            for sid in [s for s, st in self.streams.items() if st.done][: len(self.streams) - 64]:
                del self.streams[sid]
        return stream

    def events_after(self, stream_id: int, seq: int) -> list[bytes]:
        return [frame for sid, n, frame in self.replay if sid == stream_id and n > seq]

    # ------------------------------------------------------------ standalone stream

    def listener_wants(self, method: str, detail: str | None) -> bool:
        if method == "notifications/resources/updated":
            return detail in self.subscriptions
        if method == "notifications/message":
            if self.log_level is None or detail is None:
                return True
            return v.log_rank(detail) >= v.log_rank(self.log_level)
        return True

    def deliver(self, message: JSON) -> None:
        """Queue a message for the standalone GET stream. Once the client has opened one,
        messages are kept in the replay buffer even while it is disconnected, so a
        ``Last-Event-ID`` reconnect misses nothing the buffer still holds."""
        stream = self.standalone_stream
        queue = self.standalone
        if stream is None and queue is None:
            return
        data = dumps(message)
        frame = stream.record(data) if stream is not None else sse.event(data)
        if queue is not None and queue.qsize() < QUEUE_LIMIT:
            queue.put_nowait(frame)

    # ------------------------------------------------------------ server→client asks

    def open_ask(self) -> tuple[str, asyncio.Future[JSON]]:
        request_id = f"gw-{next(self._ask_ids)}"
        future: asyncio.Future[JSON] = asyncio.get_running_loop().create_future()
        self._asks[request_id] = future
        return request_id, future

    def close_ask(self, request_id: str) -> None:
        self._asks.pop(request_id, None)

    def answer(self, message: JSON) -> bool:
        future = self._asks.get(message.get("id"))  # type: ignore[arg-type]
        if future is None or future.done():
            return False
        future.set_result(message)
        return True

    def close(self) -> None:
        self.closed = True
        for task in self.inflight.values():
            task.cancel()
        for future in self._asks.values():
            if not future.done():
                future.set_result({"error": {"code": -32004, "message": "Session ended"}})
        if self.standalone is not None:
            self.standalone.put_nowait(None)


class Listener:
    """Adapter putting a legacy session on a hub's change-notification list."""

    def __init__(self, session: LegacySession) -> None:
        self.session = session

    def wants(self, method: str, detail: str | None) -> bool:
        return self.session.listener_wants(method, detail)

    def deliver(self, message: JSON) -> None:
        self.session.deliver(message)


class SessionStore:
    def __init__(self, idle_timeout: float = 3600.0, max_sessions: int = 10_000) -> None:
        self._sessions: dict[str, LegacySession] = {}
        self._idle = idle_timeout
        self._max = max_sessions

    def create(
        self,
        profile_id: int,
        token_id: int,
        protocol_version: str,
        capabilities: JSON,
        client_info: JSON | None,
    ) -> LegacySession:
        self.expire()
        if len(self._sessions) >= self._max:
            oldest = min(self._sessions.values(), key=lambda s: s.last_seen)
            self.remove(oldest.id)
        session = LegacySession(
            secrets.token_urlsafe(32),
            profile_id,
            token_id,
            protocol_version,
            capabilities,
            client_info,
        )
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str, profile_id: int, token_id: int) -> LegacySession | None:
        session = self._sessions.get(session_id)
        # A session id is useless with any other token: answer as if it did not exist.
        if session is None or session.profile_id != profile_id or session.token_id != token_id:
            return None
        session.last_seen = time.monotonic()
        return session

    def remove(self, session_id: str) -> LegacySession | None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            session.close()
        return session

    def expire(self) -> None:
        cutoff = time.monotonic() - self._idle
        for sid in [
            s.id for s in self._sessions.values() if s.last_seen < cutoff and not s.inflight
        ]:
            self.remove(sid)

    def for_token(self, token_id: int) -> list[LegacySession]:
        return [s for s in self._sessions.values() if s.token_id == token_id]

    def close_all(self) -> None:
        for sid in list(self._sessions):
            self.remove(sid)
