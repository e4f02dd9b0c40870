"""WebSocket frames from an upstream, re-framed so the scrubber reads whole messages.

After a WebSocket upgrade the proxy relays bytes. Scrubbing those bytes as one stream
fails twice: an upstream that fragments a message puts frame headers inside an echoed key
(the jail pads its message until the key straddles a fragment boundary, then joins the
fragments), and a replacement of another length than the key leaves the frame's length
wrong. So the upstream's frames are parsed, each data message's payload goes through one
scrubber, and what comes out is sent in new frames (RFC 6455 lets an intermediary change
a message's fragmentation when no extension is in use, and none is: the proxy never
offers one). Control frames (close, ping, pong) are scrubbed whole.

Owns parsing and rebuilding server-to-client frames. It must never pass on a frame it
cannot read: a masked frame (its bytes are hidden from the scrubber behind a key the frame
carries), reserved bits (an extension's encoding, compressed say), an unknown opcode or
a malformed sequence end the connection. It must never log or raise with payload bytes.
"""

from __future__ import annotations

from collections.abc import Callable

from gigmcp.egress.scrub import Scrubber
from gigmcp.errors import EgressError

CONTINUATION, TEXT, BINARY = 0x0, 0x1, 0x2
CLOSE, PING, PONG = 0x8, 0x9, 0xA
MAX_CONTROL = 125  # RFC 6455 5.5


class WebSocketViolation(EgressError):
    """The upstream sent a frame the proxy cannot scrub; the message says what kind."""


def frame(fin: bool, opcode: int, payload: bytes) -> bytes:
    """One unmasked frame (server to client)."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([n])
    elif n < 1 << 16:
        head += bytes([126]) + n.to_bytes(2, "big")
    else:
        head += bytes([127]) + n.to_bytes(8, "big")
    return head + payload


class FrameScrubber:
    """Server-to-client frames in, scrubbed frames out, streaming: a frame's payload is
    handed on as it comes (less what the scrubber holds back), never buffered whole,
    except a control frame's (125 bytes at most)."""

    def __init__(self, new_scrubber: Callable[[], Scrubber]) -> None:
        self._new = new_scrubber
        self._buf = bytearray()
        self._in_frame = False
        self._left = 0  # payload bytes of the current frame still to come
        self._fin = False
        self._opcode = 0
        self._control = bytearray()
        self._message: Scrubber | None = None  # while a data message is open
        self._pending = 0  # the opcode of the message's next frame out (0: continuation)

    def feed(self, data: bytes) -> bytes:
        """What to send to the client for ``data`` from the upstream."""
        self._buf += data
        out = bytearray()
        while True:
            if not self._in_frame and not self._header():
                return bytes(out)
            take = min(self._left, len(self._buf))
            chunk = bytes(self._buf[:take])
            del self._buf[:take]
            self._left -= take
            if self._opcode >= CLOSE:
                self._control += chunk
            elif chunk:
                assert self._message is not None
                piece = self._message.feed(chunk)
                if piece:
                    out += frame(False, self._pending, piece)
                    self._pending = CONTINUATION
            if self._left:
                return bytes(out)  # the rest of this frame is still to come
            out += self._end_of_frame()

    def _header(self) -> bool:
        b = self._buf
        if len(b) < 2:
            return False
        b0, b1 = b[0], b[1]
        if b0 & 0x70:
            raise WebSocketViolation("a frame with reserved bits set (an extension's encoding)")
        if b1 & 0x80:
            raise WebSocketViolation("a masked frame from the server")
        n, start = b1 & 0x7F, 2
        if n == 126:
            if len(b) < 4:
                return False
            n, start = int.from_bytes(b[2:4], "big"), 4
        elif n == 127:
            if len(b) < 10:
                return False
            n, start = int.from_bytes(b[2:10], "big"), 10
            if n >> 63:
                raise WebSocketViolation("a frame length with the top bit set")
        fin, opcode = bool(b0 & 0x80), b0 & 0x0F
        if opcode in (CLOSE, PING, PONG):
            if not fin or n > MAX_CONTROL:
                raise WebSocketViolation("a fragmented or oversized control frame")
        elif opcode in (TEXT, BINARY):
            if self._message is not None:
                raise WebSocketViolation("a new message inside an unfinished one")
            self._message, self._pending = self._new(), opcode
        elif opcode == CONTINUATION:
            if self._message is None:
                raise WebSocketViolation("a continuation frame outside a message")
        else:
            raise WebSocketViolation("a frame with an unknown opcode")
        del b[:start]
        self._in_frame, self._left, self._fin, self._opcode = True, n, fin, opcode
        return True

    def _end_of_frame(self) -> bytes:
        self._in_frame = False
        if self._opcode >= CLOSE:
            # Scrubbed whole; a replacement longer than the key may not fit: cut to size
            # (what is cut is the placeholder's end, never a value's).
            payload = self._new().replace_all(bytes(self._control))[:MAX_CONTROL]
            self._control.clear()
            return frame(True, self._opcode, payload)
        if not self._fin:
            return b""
        assert self._message is not None
        tail = self._message.flush()
        opcode, self._message, self._pending = self._pending, None, CONTINUATION
        return frame(True, opcode, tail)

    def __repr__(self) -> str:
        return f"FrameScrubber(in_frame={self._in_frame}, left={self._left})"
