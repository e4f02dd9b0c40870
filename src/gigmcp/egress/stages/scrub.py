"""The scrubbing stage: every real value of the instance out of what comes back, in
every spelling, across chunk boundaries (``scrub.py`` matches; this stage applies it to
a flow).

The stage asks for an answer it can read (``Accept-Encoding: identity``), decodes one
that came compressed anyway (gzip and deflate, in bounded steps, so a body that inflates
a thousandfold never sits in memory whole) and refuses any other encoding, drops a
response header whose name holds a value and scrubs every value, and re-frames WebSocket
messages so that the scrubber reads them whole (``websocket.py``). An instance with no
value to scrub passes through untouched.

Owns those points of a flow. It must never let bytes it did not read reach the sandbox,
and never log or raise with a value.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import h11

from gigmcp.egress.flow import Flow
from gigmcp.egress.http1 import FLUSH_BYTES, Denied, Headers, header_of
from gigmcp.egress.websocket import FrameScrubber


class ScrubStage:
    def on_request_headers(self, flow: Flow) -> None:
        keys = flow.client.keys
        if keys.scrubs:
            # Ask for an answer the scrubber can read.
            flow.headers = [(n, v) for n, v in flow.headers if n.lower() != b"accept-encoding"]
            flow.headers.append((b"accept-encoding", b"identity"))
            flow.scrubber = keys.scrubber()

    def on_response_headers(self, flow: Flow, response: h11.Response) -> None:
        """Picks the decoder the answer needs; Denied when it cannot be read (or names
        its encoding twice, scrubbed or not)."""
        encoding = (header_of(response.headers, b"content-encoding") or b"").strip().lower()
        if flow.scrubber is None or encoding in (b"", b"identity"):
            return
        if encoding in (b"gzip", b"x-gzip", b"deflate"):
            flow.decoder = zlib.decompressobj(wbits=47 if encoding != b"deflate" else 15)
        else:
            raise Denied(502, "undecodable-encoding", "an answer the proxy cannot scrub")

    def headers(self, flow: Flow, headers: Headers) -> Headers:
        """The headers of any answer (final, informational, switching) scrubbed."""
        scrubber = flow.scrubber
        if scrubber is None:
            return headers
        # A name cannot take a placeholder's spelling of every kind, and h11 lower-cases
        # it (a lower-cased key is still most of a key): the header goes.
        return [(n, scrubber.replace_all(v)) for n, v in headers if not scrubber.found_folded(n)]

    def on_response_body_chunk(self, flow: Flow, data: bytes) -> Iterator[bytes]:
        """What to hand on for ``data``, piece by piece: each piece is to be sent before
        the next is made."""
        decoder, scrubber = flow.decoder, flow.scrubber
        while data:
            if decoder is not None:
                # In bounded steps, each handed on before the next: a body that inflates
                # a thousandfold never sits in memory whole.
                piece = decoder.decompress(data, FLUSH_BYTES)
                data = decoder.unconsumed_tail
            else:
                piece, data = data, b""
            if scrubber is not None:
                piece = scrubber.feed(piece)
            if piece:
                yield piece

    def on_response_end(self, flow: Flow) -> bytes:
        """What is left to hand on at the end of the answer."""
        tail = flow.decoder.flush() if flow.decoder is not None else b""
        if flow.scrubber is not None:
            tail = flow.scrubber.feed(tail) + flow.scrubber.flush()
        return tail

    def on_switch(self, flow: Flow) -> FrameScrubber | None:
        """For a WebSocket upgrade: the re-framer of the upstream's frames, one scrubber
        per message."""
        if flow.scrubber is None:
            return None
        return FrameScrubber(flow.client.keys.scrubber)
