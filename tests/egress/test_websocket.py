"""WebSocket frames from an upstream, re-framed so the scrubber reads whole messages:
a key split over fragments and chunks in every way is still replaced, the frames that come
out are valid, and a frame the scrubber cannot read ends the connection."""

from __future__ import annotations

import itertools
import random

import pytest

from gigmcp.egress.scrub import Scrubber, ScrubRules
from gigmcp.egress.websocket import FrameScrubber, WebSocketViolation, frame
from tests.support.egress_lab import ws_frame, ws_message, ws_parse

SECRET = b"sk_live_51Hx/9+Zq=REALkey_0123456789"
PLACEHOLDER = b"gigmcp_ph_" + b"Q" * 50  # another length: the frames' lengths change
RULES = ScrubRules({SECRET: PLACEHOLDER})


def scrubber() -> FrameScrubber:
    return FrameScrubber(lambda: Scrubber(RULES))


def fragments(message: bytes, cuts: list[int], opcode: int = 0x1) -> bytes:
    """``message`` as one data message in fragments cut at ``cuts``."""
    bounds = [0, *sorted(set(cuts)), len(message)]
    parts = [message[a:b] for a, b in itertools.pairwise(bounds)]
    return b"".join(
        ws_frame(part, opcode if i == 0 else 0, fin=i == len(parts) - 1)
        for i, part in enumerate(parts)
    )


def run(data: bytes, chunks: list[int]) -> list[tuple[int, int, bytes]]:
    """Feeds ``data`` cut at ``chunks``; returns the frames out, checking they all parse."""
    fs = scrubber()
    out = b""
    last = 0
    for cut in [*sorted(set(chunks)), len(data)]:
        out += fs.feed(data[last:cut])
        last = cut
    frames, rest = ws_parse(out)
    assert rest == b""
    return frames


def test_a_key_over_fragments_and_chunks_in_every_way_is_replaced() -> None:
    rng = random.Random(11)
    message = b"pad" * 7 + SECRET + b"|" + SECRET + b"tail"
    for _ in range(300):
        wire = fragments(message, [rng.randrange(len(message)) for _ in range(rng.randrange(6))])
        frames = run(wire, [rng.randrange(len(wire)) for _ in range(rng.randrange(12))])
        assert ws_message(frames) == Scrubber(RULES).replace_all(message)
        assert SECRET not in b"".join(p for _h, _o, p in frames)
        # One message out: the first frame carries the opcode, the last FIN, none between.
        assert frames[0][1] == 0x1 and all(o == 0 for _h, o, _p in frames[1:])
        assert frames[-1][0] & 0x80 and not any(h & 0x80 for h, _o, _p in frames[:-1])


def test_a_key_split_one_byte_per_fragment_is_replaced() -> None:
    message = b"ws-auth:" + SECRET + b"\n"
    frames = run(fragments(message, list(range(1, len(message)))), [])
    assert ws_message(frames) == b"ws-auth:" + PLACEHOLDER + b"\n"


def test_control_frames_between_fragments_pass_scrubbed() -> None:
    message = b"x" * 10 + SECRET
    wire = fragments(message, [14])
    first_end = len(ws_frame(message[:14], 0x1, fin=False))
    ping = ws_frame(b"ping:" + SECRET, 0x9)
    frames = run(wire[:first_end] + ping + wire[first_end:], [3, first_end + 2])
    pings = [p for _h, o, p in frames if o == 0x9]
    assert pings == [b"ping:" + PLACEHOLDER]
    assert ws_message(frames) == b"x" * 10 + PLACEHOLDER


def test_long_and_binary_messages_keep_their_lengths_right() -> None:
    for size in (125, 126, 65535, 65536, 70000):
        message = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
        frames = run(fragments(message + SECRET, [size // 2], opcode=0x2), [size // 3])
        assert ws_message(frames) == message + PLACEHOLDER
        assert frames[0][1] == 0x2


@pytest.mark.parametrize(
    ("wire", "what"),
    [
        (ws_frame(b"hidden", mask=b"\x01\x02\x03\x04"), "masked"),
        (ws_frame(b"deflated", rsv1=True), "reserved bits"),
        (ws_frame(b"x", 0x3), "unknown opcode"),
        (ws_frame(b"x", 0x0), "continuation frame outside"),
        (ws_frame(b"a", 0x1, fin=False) + ws_frame(b"b", 0x1), "new message inside"),
        (ws_frame(b"p", 0x9, fin=False), "control frame"),
        (ws_frame(b"p" * 126, 0x9), "control frame"),
    ],
)
def test_attack_a_frame_the_scrubber_cannot_read_is_refused(wire: bytes, what: str) -> None:
    with pytest.raises(WebSocketViolation, match=what):
        scrubber().feed(wire)


def test_the_encoder_writes_what_the_parser_reads() -> None:
    for n in (0, 125, 126, 65535, 65536):
        assert ws_parse(frame(True, 0x2, b"y" * n)) == ([(0x82, 0x2, b"y" * n)], b"")


def test_no_repr_shows_payload() -> None:
    fs = scrubber()
    fs.feed(ws_frame(SECRET[:20], 0x1, fin=False))
    assert SECRET[:8] not in repr(fs).encode()
