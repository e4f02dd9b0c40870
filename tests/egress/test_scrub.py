"""Scrubbing a real value out of a stream, in every spelling, across every chunking; and
spotting placeholders on their way out."""

from __future__ import annotations

import base64
import json
import random
import re
import urllib.parse

import pytest

from gigmcp.egress.scrub import Detector, Scrubber, encoded_forms

SECRET = b'sk_live_51Hx/9+Zq=REAL"key\xc3\xa9end'
PLACEHOLDER = b"gigmcp_ph_" + b"Q" * (len(SECRET) - 10)


def scrub_in_chunks(scrubber: Scrubber, data: bytes, cuts: list[int]) -> bytes:
    out = []
    last = 0
    for cut in [*sorted(cuts), len(data)]:
        out.append(scrubber.feed(data[last:cut]))
        assert scrubber.held < max(len(f) for f in encoded_forms(SECRET))
        last = cut
    out.append(scrubber.flush())
    return b"".join(out)


def spellings(value: bytes) -> list[bytes]:
    text = value.decode()
    return [
        value,
        urllib.parse.quote(value, safe="").encode(),
        re.sub(
            r"%[0-9A-F]{2}", lambda m: m[0].lower(), urllib.parse.quote(value, safe="")
        ).encode(),
        urllib.parse.quote_plus(value).encode(),
        json.dumps(text).encode(),
        json.dumps(text, ensure_ascii=False).encode(),
    ]


def test_a_secret_split_one_byte_per_chunk_is_still_replaced() -> None:
    data = b"header " + SECRET + b" trailer"
    out = scrub_in_chunks(Scrubber({SECRET: PLACEHOLDER}), data, list(range(1, len(data))))
    assert out == b"header " + PLACEHOLDER + b" trailer"


@pytest.mark.parametrize("spelling", range(6))
def test_every_text_spelling_is_replaced_across_random_chunkings(spelling: int) -> None:
    rng = random.Random(spelling)
    form = spellings(SECRET)[spelling]
    data = b"".join(rng.randbytes(rng.randrange(0, 300)) + form for _ in range(20))
    for _ in range(30):
        cuts = [rng.randrange(len(data)) for _ in range(rng.randrange(1, 60))]
        out = scrub_in_chunks(Scrubber({SECRET: PLACEHOLDER}), data, cuts)
        for s in spellings(SECRET):
            assert s not in out
        assert out.count(spellings(PLACEHOLDER)[spelling]) >= 20


@pytest.mark.parametrize("urlsafe", [False, True])
@pytest.mark.parametrize("alignment", [0, 1, 2])
def test_base64_at_every_alignment_no_longer_decodes_to_the_secret(
    alignment: int, urlsafe: bool
) -> None:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    decode = base64.urlsafe_b64decode if urlsafe else base64.b64decode
    plain = b"P" * alignment + SECRET + b"tail-of-document"
    data = encode(plain)
    out = scrub_in_chunks(Scrubber({SECRET: PLACEHOLDER}), data, [5, 17, len(data) // 2])
    decoded = decode(out)
    assert SECRET not in decoded
    assert PLACEHOLDER[2:-2] in decoded  # equal lengths: the placeholder, edges aside


def test_the_longer_of_two_overlapping_secrets_wins() -> None:
    short, long_ = b"abcdefgh12345678", b"abcdefgh12345678ZZZZZZZZ"
    scrubber = Scrubber({short: b"S" * 16, long_: b"L" * 24})
    data = b"x" + long_ + b"y" + short + b"z"
    for cuts in ([], [3], [17], list(range(1, len(data)))):
        out = scrub_in_chunks(Scrubber({short: b"S" * 16, long_: b"L" * 24}), data, cuts)
        assert out == b"x" + b"L" * 24 + b"y" + b"S" * 16 + b"z"
    assert scrubber.replace_all(data) == b"x" + b"L" * 24 + b"y" + b"S" * 16 + b"z"


def test_secrets_at_the_very_edges_and_back_to_back() -> None:
    data = SECRET + SECRET + b"-" + SECRET
    out = scrub_in_chunks(Scrubber({SECRET: PLACEHOLDER}), data, [1, len(SECRET) + 3])
    assert out == PLACEHOLDER + PLACEHOLDER + b"-" + PLACEHOLDER


def test_nothing_is_lost_or_added_without_a_secret() -> None:
    rng = random.Random(7)
    data = rng.randbytes(1 << 16)
    out = scrub_in_chunks(
        Scrubber({SECRET: PLACEHOLDER}), data, [rng.randrange(len(data)) for _ in range(40)]
    )
    assert out == data


def test_with_nothing_to_scrub_chunks_pass_untouched_and_nothing_is_held() -> None:
    scrubber = Scrubber({})
    assert scrubber.feed(b"abc") == b"abc" and scrubber.held == 0 and scrubber.flush() == b""


def test_the_detector_finds_placeholders_split_and_encoded() -> None:
    ph = b"gigmcp_ph_AbCdEfGhIjKlMnOpQrStUvWxYz012345"
    detector = Detector({ph: "github_token"})
    data = b"q=" + base64.b64encode(b"user:" + ph) + b"&x=" + ph
    found: set[str] = set()
    for i in range(0, len(data), 3):
        found |= detector.feed(data[i : i + 3])
    assert found == {"github_token"}
    assert Detector({ph: "t"}).scan(urllib.parse.quote(b"a b " + ph).encode()) == {"t"}


def test_the_detector_finds_nothing_in_random_data() -> None:
    detector = Detector({b"gigmcp_ph_" + b"Z" * 32: "t"})
    assert detector.scan(random.Random(1).randbytes(1 << 20)) == set()


def test_no_repr_shows_a_secret() -> None:
    scrubber = Scrubber({SECRET: PLACEHOLDER})
    for text in (repr(scrubber), repr(Detector({PLACEHOLDER: "x"}))):
        assert SECRET.decode("latin-1") not in text and "REAL" not in text


def test_bytes_that_cannot_begin_a_secret_are_not_held_back() -> None:
    # An event stream waits for each answer: a short line must go out at once.
    scrubber = Scrubber({SECRET: PLACEHOLDER})
    assert scrubber.feed(b"data: hello\n\n") == b"data: hello\n\n"
    assert scrubber.held == 0
    # The beginning of the secret is held, and released (replaced) once it completes.
    assert scrubber.feed(b"x" + SECRET[:10]) == b"x"
    assert scrubber.held == 10
    assert scrubber.feed(SECRET[10:] + b"!") == PLACEHOLDER + b"!"
