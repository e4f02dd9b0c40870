"""Byte-bounded buffers toward clients: the queue of one SSE stream, a session's replay.

A client that reads slowly (or not at all) while a server floods notifications must not
grow the gateway: what waits for a client is bounded in bytes, not in frames. The policy
is to DROP, not to push back on the server: one server's notifications fan out to many
clients, and one slow client must not stall the others (nor the server's responses,
which share its stdout). So:

- notifications (progress, log messages, list_changed, resources/updated) are dropped
  when the stream's queue is full; list_changed and resources/updated are *coalesced*
  (one queued copy per kind and URI is as good as many, so they are rarely lost);
- responses, server→client requests and the end of a stream are *essential*: always
  queued. They are bounded elsewhere (one response per request, GIG_MAX_MESSAGE_BYTES
  each; server→client requests by GIG_MAX_SERVER_REQUESTS per instance).

A replay buffer keeps essential frames and notifications apart, each bounded in bytes,
oldest evicted first, so a notification flood cannot push a response out of it. This
module does no I/O and must never drop an essential frame.
"""

from __future__ import annotations

import asyncio
from collections import deque

# Default bound of one stream's queue and of one session's replay (GIG_CLIENT_BUFFER_BYTES).
BUFFER_BYTES = 1024 * 1024

# What a notification of this method is coalesced by (None: not coalesced).
_COALESCED = (
    "notifications/tools/list_changed",
    "notifications/prompts/list_changed",
    "notifications/resources/list_changed",
)


def coalesce_key(method: str, uri: str | None = None) -> str | None:
    if method in _COALESCED:
        return method
    if method == "notifications/resources/updated" and uri is not None:
        return f"{method} {uri}"
    return None


class FrameQueue:
    """Frames waiting for one client stream; ``None`` from :meth:`get` ends the stream."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: deque[tuple[bytes, bool, str | None] | None] = deque()
        self._bytes = 0
        self._keys: set[str] = set()
        self._ready = asyncio.Event()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def size(self) -> int:
        return self._bytes

    def has_room(self, size: int, key: str | None = None) -> bool:
        """Whether a notification of ``size`` bytes would be queued. An empty queue takes
        one frame of any size (a message is bounded by GIG_MAX_MESSAGE_BYTES)."""
        if key is not None and key in self._keys:
            return False
        return not self._items or self._bytes + size <= self.limit

    def put(self, frame: bytes, *, essential: bool = False, key: str | None = None) -> bool:
        """Queue a frame; a notification is dropped (False) when there is no room."""
        if not essential and not self.has_room(len(frame), key):
            self.dropped += 1
            return False
        self._items.append((frame, essential, key))
        self._bytes += len(frame)
        if key is not None:
            self._keys.add(key)
        self._ready.set()
        return True

    def close(self) -> None:
        self._items.append(None)
        self._ready.set()

    def get_nowait(self) -> tuple[bytes, bool] | None:
        """The next frame and whether it is essential; None: the stream ends. Raises
        IndexError when nothing waits."""
        item = self._items.popleft()
        if item is None:
            self._items.appendleft(None)  # stays closed for every later reader
            return None
        frame, essential, key = item
        self._bytes -= len(frame)
        if key is not None:
            self._keys.discard(key)
        return frame, essential

    async def get(self) -> tuple[bytes, bool] | None:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self.get_nowait()


class ReplayBuffer:
    """A session's frames kept for ``Last-Event-ID`` resumption, by (stream, seq)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._kinds: dict[bool, deque[tuple[int, int, bytes]]] = {True: deque(), False: deque()}
        self._bytes: dict[bool, int] = {True: 0, False: 0}

    @property
    def size(self) -> int:
        return self._bytes[True] + self._bytes[False]

    def append(self, stream_id: int, seq: int, frame: bytes, essential: bool) -> None:
        kept = self._kinds[essential]
        kept.append((stream_id, seq, frame))
        self._bytes[essential] += len(frame)
        # Oldest out first; the newest frame stays even if it alone is over the limit.
        while self._bytes[essential] > self.limit and len(kept) > 1:
            _, _, old = kept.popleft()
            self._bytes[essential] -= len(old)

    def after(self, stream_id: int, seq: int) -> list[bytes]:
        found = [
            (n, frame)
            for kind in (True, False)
            for sid, n, frame in self._kinds[kind]
            if sid == stream_id and n > seq
        ]
        return [frame for _, frame in sorted(found, key=lambda item: item[0])]

    def clear(self) -> None:
        for kind in (True, False):
            self._kinds[kind].clear()
            self._bytes[kind] = 0
