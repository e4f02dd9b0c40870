"""Stateful sessions for legacy clients (2024-11-05 … 2025-11-25 over Streamable HTTP).

Owns session ids (CSPRNG, bound to the token that created them), the standalone GET
stream, the replay buffer behind ``Last-Event-ID``, in-flight client requests (for
``notifications/cancelled``) and server→client requests waiting for the client's answer.
It must never let a session be used with another token and never grow without bound:
sessions are capped per token, per profile and in all (a token over its cap loses its
own oldest session, a profile over its cap its own oldest: never another profile's);
idle sessions expire; queues and replay buffers are bounded in bytes
(endpoint/buffers.py). However a session ends (DELETE, expiry, eviction, its token
revoked, shutdown) it leaves nothing behind: its hub listener is removed and its streams
end.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gigmcp.core.jsontypes import JSON
from gigmcp.endpoint import sse
from gigmcp.endpoint.buffers import BUFFER_BYTES, FrameQueue, ReplayBuffer, coalesce_key
from gigmcp.errors import ProtocolError
from gigmcp.mcp import versions as v
from gigmcp.mcp.jsonrpc import dumps

MAX_STREAMS = 64


class SessionLimit(ProtocolError):
    """No room for another session (the gateway-wide cap); the message is for the client."""


@dataclass(eq=False)
class ReplayStream:
    """One SSE stream of a session whose events can be replayed after a reconnect."""

    session: LegacySession
    stream_id: int
    seq: int = 0
    done: bool = False
    # A reconnected GET that took this stream over; events go there live.
    follower: FrameQueue | None = None

    def record(self, data: bytes, essential: bool = True) -> bytes:
        self.seq += 1
        event_id = f"{self.stream_id}-{self.seq}"
        frame = sse.event(data, event_id)
        self.session.replay.append(self.stream_id, self.seq, frame, essential)
        if self.follower is not None:
            self.follower.put(frame, essential=essential)
        return frame

    def finish(self) -> None:
        self.done = True
        if self.follower is not None:
            self.follower.close()


@dataclass(eq=False)
class LegacySession:
    id: str
    profile_id: int
    token_id: int
    protocol_version: str
    client_capabilities: JSON
    client_info: JSON | None
    log_level: str | None = None
    last_seen: float = field(default_factory=time.monotonic)
    created: float = field(default_factory=time.monotonic)
    inflight: dict[Any, asyncio.Task[Any]] = field(default_factory=dict)
    buffer_bytes: int = BUFFER_BYTES
    replay: ReplayBuffer = field(init=False)
    streams: dict[int, ReplayStream] = field(default_factory=dict)
    standalone: FrameQueue | None = None
    standalone_stream: ReplayStream | None = None
    # Run once when the session ends, however it ends (listener removal and the like).
    on_close: list[Callable[[], None]] = field(default_factory=list)
    _asks: dict[str, asyncio.Future[JSON]] = field(default_factory=dict)
    _ask_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _stream_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    closed: bool = False
    # What the endpoint puts on its hub's fan-out for the life of the session.
    listener: SessionListener = field(init=False)

    def __post_init__(self) -> None:
        self.replay = ReplayBuffer(self.buffer_bytes)
        self.listener = SessionListener(self)

    @property
    def resumable(self) -> bool:
        return v.has_resumability(self.protocol_version)

    def new_queue(self) -> FrameQueue:
        return FrameQueue(self.buffer_bytes)

    # ------------------------------------------------------------ replayable streams

    def new_stream(self) -> ReplayStream | None:
        if not self.resumable:
            return None
        stream = ReplayStream(self, next(self._stream_ids))
        self.streams[stream.stream_id] = stream
        if len(self.streams) > MAX_STREAMS:  # forget finished streams beyond a bound
            extra = len(self.streams) - MAX_STREAMS
            for sid in [s for s, st in self.streams.items() if st.done][:extra]:
                del self.streams[sid]
        return stream

    def events_after(self, stream_id: int, seq: int) -> list[bytes]:
        return self.replay.after(stream_id, seq)

    # ------------------------------------------------------------ standalone stream

    def listener_wants(self, method: str, detail: str | None) -> bool:
        # Resource updates are not asked about: the hub's fan-out sends them to the
        # listeners that subscribed to the URI.
        if method == "notifications/message":
            if self.log_level is None or detail is None:
                return True
            return v.log_rank(detail) >= v.log_rank(self.log_level)
        return True

    def deliver(self, message: JSON) -> None:
        """Queue a notification for the standalone GET stream. Once the client has opened
        one, notifications are kept in the (byte-bounded) replay buffer even while it is
        disconnected, so a ``Last-Event-ID`` reconnect misses nothing the buffer still
        holds. A notification the live queue has no room for is dropped, not recorded:
        see endpoint/buffers.py for what may be dropped."""
        if self.closed:
            return
        stream = self.standalone_stream
        queue = self.standalone
        if stream is None and queue is None:
            return
        data = dumps(message)
        params = message.get("params")
        uri = params.get("uri") if isinstance(params, dict) else None
        key = coalesce_key(str(message.get("method")), uri if isinstance(uri, str) else None)
        if queue is not None and not queue.has_room(len(data) + 64, key):
            queue.dropped += 1
            return
        frame = stream.record(data, essential=False) if stream is not None else sse.event(data)
        if queue is not None:
            queue.put(frame, key=key)

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
        if self.closed:
            return
        self.closed = True
        for task in self.inflight.values():
            task.cancel()
        for future in self._asks.values():
            if not future.done():
                future.set_result({"error": {"code": -32004, "message": "Session ended"}})
        if self.standalone is not None:
            self.standalone.close()
        for stream in self.streams.values():
            if stream.follower is not None:
                stream.follower.close()
        hooks, self.on_close = self.on_close, []
        for hook in hooks:
            hook()
        self.replay.clear()


class SessionListener:
    """Adapter putting a legacy session on a hub's fan-out (router/fanout.py)."""

    def __init__(self, session: LegacySession) -> None:
        self.session = session
        self.token_id = session.token_id

    def wants(self, method: str, detail: str | None) -> bool:
        return self.session.listener_wants(method, detail)

    def deliver(self, message: JSON) -> None:
        self.session.deliver(message)


class SessionStore:
    """Every legacy session of the gateway, indexed by id, token and profile."""

    def __init__(
        self,
        idle_timeout: float = 3600.0,
        max_sessions: int = 10_000,
        *,
        per_token: int = 100,
        per_profile: int = 1000,
        buffer_bytes: int = BUFFER_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions: dict[str, LegacySession] = {}
        self._by_token: dict[int, dict[str, LegacySession]] = {}
        self._by_profile: dict[int, dict[str, LegacySession]] = {}
        self._idle = idle_timeout
        self._max = max_sessions
        self._per_token = per_token
        self._per_profile = per_profile
        self._buffer = buffer_bytes
        self._clock = clock

    def __len__(self) -> int:
        return len(self._sessions)

    @property
    def sweep_interval(self) -> float:
        """How often idle sessions are looked for: a quarter of the idle timeout, within
        [50 ms, 30 s]."""
        return min(30.0, max(0.05, self._idle / 4))

    def create(
        self,
        profile_id: int,
        token_id: int,
        protocol_version: str,
        capabilities: JSON,
        client_info: JSON | None,
    ) -> LegacySession:
        """A new session. Room is made within the caller's own token, then its own profile; when the
        whole gateway is full the new session is refused (:class:`SessionLimit`), since
        making room would mean evicting another tenant."""
        self.expire()
        self._make_room(self._by_token.get(token_id), self._per_token)
        self._make_room(self._by_profile.get(profile_id), self._per_profile)
        if len(self._sessions) >= self._max:
            raise SessionLimit("Too many sessions on this gateway; try again later")
        now = self._clock()
        session = LegacySession(
            secrets.token_urlsafe(32),
            profile_id,
            token_id,
            protocol_version,
            capabilities,
            client_info,
            last_seen=now,
            created=now,
            buffer_bytes=self._buffer,
        )
        self._sessions[session.id] = session
        self._by_token.setdefault(token_id, {})[session.id] = session
        self._by_profile.setdefault(profile_id, {})[session.id] = session
        return session

    def _make_room(self, group: dict[str, LegacySession] | None, cap: int) -> None:
        while group and len(group) >= cap:
            oldest = min(group.values(), key=lambda s: (s.last_seen, s.created))
            self.remove(oldest.id)

    def get(self, session_id: str, profile_id: int, token_id: int) -> LegacySession | None:
        session = self._sessions.get(session_id)
        # A session id is useless with any other token: answer as if it did not exist.
        if session is None or session.profile_id != profile_id or session.token_id != token_id:
            return None
        session.last_seen = self._clock()
        return session

    def remove(self, session_id: str) -> LegacySession | None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            for index, key in (
                (self._by_token, session.token_id),
                (self._by_profile, session.profile_id),
            ):
                group = index.get(key)
                if group is not None:
                    group.pop(session_id, None)
                    if not group:
                        del index[key]
            session.close()
        return session

    def expire(self) -> None:
        """End sessions idle for longer than the timeout. A session busy with a request or
        holding its GET stream open is in use, not idle."""
        cutoff = self._clock() - self._idle
        for sid in [
            s.id
            for s in self._sessions.values()
            if s.last_seen < cutoff and not s.inflight and s.standalone is None
        ]:
            self.remove(sid)

    def for_token(self, token_id: int) -> list[LegacySession]:
        return list(self._by_token.get(token_id, {}).values())

    def close_tokens(self, live: frozenset[int]) -> int:
        """End every session whose token is no longer valid; how many ended."""
        gone = [sid for tid, group in self._by_token.items() if tid not in live for sid in group]
        for sid in gone:
            self.remove(sid)
        return len(gone)

    def close_all(self) -> None:
        for sid in list(self._sessions):
            self.remove(sid)
