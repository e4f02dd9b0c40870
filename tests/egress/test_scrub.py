"""Scrubbing a real value out of a stream, in every spelling, across every chunking; spotting
placeholders on their way out; minting placeholders."""

from __future__ import annotations

import base64
import json
import math
import random
import re
import urllib.parse
from collections.abc import Callable

import pytest

from gigmcp.core.placeholders import placeholder
from gigmcp.egress.scrub import Detector, Scrubber, ScrubRules, encoded_forms

# '/', '+', '=', '"', a space and a non-ASCII letter: every encoding changes it.
SECRET = b'sk_live_51Hx/9+Zq=REAL"key \xc3\xa9end'
PLACEHOLDER = b"gigmcp_ph_" + b"Q7" * ((len(SECRET) - 10) // 2)
assert len(PLACEHOLDER) == len(SECRET)


def pct_lower(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), text)


# The text spellings, written here independently of the module.
TEXT_SPELLINGS: dict[str, Callable[[bytes], bytes]] = {
    "raw": lambda v: v,
    "pct": lambda v: urllib.parse.quote(v, safe="").encode(),
    "pct-lower": lambda v: pct_lower(urllib.parse.quote(v, safe="")).encode(),
    "plus": lambda v: urllib.parse.quote_plus(v, safe="").encode(),
    "json": lambda v: json.dumps(v.decode())[1:-1].encode(),
    "json-utf8": lambda v: json.dumps(v.decode(), ensure_ascii=False)[1:-1].encode(),
    "json-slash": lambda v: json.dumps(v.decode())[1:-1].replace("/", "\\/").encode(),
}


def b64_core(value: bytes, k: int, urlsafe: bool) -> bytes:
    """The base64 characters of ``value`` at alignment k that no neighbour influences."""
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    enc = encode(b"\0" * k + value)
    return enc[math.ceil(8 * k / 6) : (8 * (k + len(value))) // 6]


def stream(
    data: bytes, cuts: list[int], pairs: dict[bytes, bytes] | None = None
) -> tuple[bytes, Scrubber]:
    """Feeds ``data`` cut at ``cuts`` to a new scrubber; checks at every step that what came
    out is final (a prefix of the one-shot result) and that no more than the longest
    spelling minus one byte is held. Returns the output and the scrubber."""
    pairs = {SECRET: PLACEHOLDER} if pairs is None else pairs
    bound = max(len(f) for secret in pairs for f in encoded_forms(secret)) - 1
    expected = Scrubber(pairs).replace_all(data)
    scrubber = Scrubber(pairs)
    out = bytearray()
    last = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        out += scrubber.feed(data[last:cut])
        last = cut
        assert 0 <= scrubber.held <= bound
        assert expected.startswith(out)
    out += scrubber.flush()
    assert scrubber.held == 0
    assert bytes(out) == expected
    return bytes(out), scrubber


def scrub(data: bytes, cuts: list[int], pairs: dict[bytes, bytes] | None = None) -> bytes:
    return stream(data, cuts, pairs)[0]


# --- the spellings ----------------------------------------------------------------------


def test_every_spelling_is_listed_once_and_none_is_short() -> None:
    forms = encoded_forms(SECRET)
    assert len(forms) == len(set(forms))
    assert all(len(f) >= 8 for f in forms)
    for spell in TEXT_SPELLINGS.values():
        assert spell(SECRET) in forms
    for urlsafe in (False, True):
        for k in range(3):
            assert b64_core(SECRET, k, urlsafe) in forms
    pct = urllib.parse.quote(SECRET, safe="")
    assert pct.encode() != pct_lower(pct).encode()


def test_a_value_no_encoding_changes_has_only_its_raw_and_base64_spellings() -> None:
    value = b"AbCdEfGh0123456789xyz"
    forms = encoded_forms(value)
    assert forms[0] == value
    assert sum(f == value for f in forms) == 1
    encodings = [
        enc(b"\0" * k + value)
        for enc in (base64.b64encode, base64.urlsafe_b64encode)
        for k in range(3)
    ]
    assert all(f == value or any(f in e for e in encodings) for f in forms)


def test_short_spellings_are_left_out() -> None:
    assert encoded_forms(b"abc") == []
    # Seven raw bytes: their percent form is long enough, the raw one is not.
    forms = encoded_forms(b"a/b/c/d")
    assert b"a%2Fb%2Fc%2Fd" in forms and b"a%2fb%2fc%2fd" in forms
    assert b"a/b/c/d" not in forms
    assert Scrubber({b"a/b/c/d": b"1234567"}).replace_all(b"a/b/c/d") == b"a/b/c/d"


@pytest.mark.parametrize("urlsafe", [False, True])
def test_base64_cores_depend_on_the_secret_alone(urlsafe: bool) -> None:
    # Whatever precedes and follows the secret, one of its cores is in the encoding.
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    rng = random.Random(5)
    cores = [b64_core(SECRET, k, urlsafe) for k in range(3)]
    for _ in range(200):
        before, after = rng.randbytes(rng.randrange(12)), rng.randbytes(rng.randrange(12))
        assert cores[len(before) % 3] in encode(before + SECRET + after)
        assert cores[len(before) % 3] in encoded_forms(SECRET)


# --- replacing --------------------------------------------------------------------------


def embedded_body(
    rng: random.Random, total: int = 1 << 16, count: int = 20
) -> tuple[bytes, bytes, list[tuple[int, int]]]:
    """``total`` bytes of random data with ``count`` text spellings of SECRET at random
    places (each between newlines), the same with PLACEHOLDER spelled the same way
    instead, and each occurrence's (offset, length)."""
    kinds = list(TEXT_SPELLINGS)
    offsets = sorted(rng.sample(range(total - count * 80), count))
    data, want = bytearray(), bytearray()
    spots: list[tuple[int, int]] = []
    for i, off in enumerate(offsets):
        gap = rng.randbytes(max(0, off - len(data))).replace(b"\n", b"-") + b"\n"
        spell = TEXT_SPELLINGS[kinds[i % len(kinds)]]
        data += gap
        want += gap
        spots.append((len(data), len(spell(SECRET))))
        data += spell(SECRET) + b"\n"
        want += spell(PLACEHOLDER) + b"\n"
    tail = rng.randbytes(total - len(data)).replace(b"\n", b"-")
    return bytes(data + tail), bytes(want + tail), spots


def test_twenty_secrets_in_every_text_spelling_over_300_random_chunkings() -> None:
    rng = random.Random(2024)
    data, want, _spots = embedded_body(rng)
    assert len(data) == 1 << 16
    assert not any(f in want for f in encoded_forms(SECRET))
    for _ in range(300):
        cuts = [rng.randrange(len(data)) for _ in range(rng.randrange(1, 200))]
        out, scrubber = stream(data, cuts)
        assert out == want
        assert scrubber.replaced == 20


def test_a_cut_at_every_position_around_every_secret() -> None:
    rng = random.Random(99)
    data, want, spots = embedded_body(rng)
    for off, length in spots:
        for cut in range(off - 2, off + length + 3):
            assert scrub(data, [cut]) == want
        # And three cuts inside the secret at once.
        assert scrub(data, rng.sample(range(off, off + length), 3)) == want


def test_a_secret_split_one_byte_per_chunk_is_still_replaced() -> None:
    data = b"header " + SECRET + b" trailer"
    out = scrub(data, list(range(1, len(data))))
    assert out == b"header " + PLACEHOLDER + b" trailer"


def test_secrets_at_the_very_edges_and_back_to_back() -> None:
    for data, want in [
        (SECRET, PLACEHOLDER),
        (SECRET + SECRET, PLACEHOLDER + PLACEHOLDER),
        (SECRET + b"-" + SECRET, PLACEHOLDER + b"-" + PLACEHOLDER),
        (b"x" + SECRET, b"x" + PLACEHOLDER),
        (SECRET + b"x", PLACEHOLDER + b"x"),
    ]:
        for cuts in ([], [1], [len(SECRET)], [len(SECRET) - 1, len(SECRET) + 1]):
            out, scrubber = stream(data, cuts)
            assert out == want
            assert scrubber.replaced == data.count(SECRET)


def test_output_length_accounts_for_every_byte_and_the_hold_is_bounded() -> None:
    # A shorter placeholder makes each replacement visible in the byte count.
    short = b"gigmcp_ph_AAAA1111"
    longest = max(len(f) for f in encoded_forms(SECRET))
    rng = random.Random(11)
    # Many beginnings of the secret that never complete: the worst case for holding.
    pieces = [SECRET[: rng.randrange(1, len(SECRET))] for _ in range(300)]
    pieces += [SECRET] * 30
    rng.shuffle(pieces)
    data = b"".join(pieces)
    delta = len(short) - len(SECRET)
    scrubber = Scrubber({SECRET: short})
    fed = released = 0
    most_held = 0
    while fed < len(data):
        chunk = data[fed : fed + rng.randrange(1, 40)]
        fed += len(chunk)
        released += len(scrubber.feed(chunk))
        most_held = max(most_held, scrubber.held)
        assert scrubber.held <= longest - 1
        assert released == fed - scrubber.held + scrubber.replaced * delta
    released += len(scrubber.flush())
    assert most_held == len(SECRET) - 1  # it did hold, as much as a raw beginning needs
    assert scrubber.held == 0
    assert scrubber.replaced == data.count(SECRET) == 30
    assert released == len(data) + 30 * delta


def test_flush_releases_an_unfinished_beginning_as_it_was() -> None:
    scrubber = Scrubber({SECRET: PLACEHOLDER})
    assert scrubber.feed(b"ok " + SECRET[:-1]) == b"ok "
    assert scrubber.held == len(SECRET) - 1
    assert scrubber.flush() == SECRET[:-1]
    assert scrubber.flush() == b""


def test_nothing_is_lost_or_added_without_a_secret() -> None:
    rng = random.Random(7)
    data = rng.randbytes(1 << 16) + SECRET[:-1]
    assert scrub(data, [rng.randrange(len(data)) for _ in range(40)]) == data


def test_with_nothing_to_scrub_chunks_pass_untouched_and_nothing_is_held() -> None:
    for scrubber in (Scrubber({}), Scrubber({b"abc": b"ph"})):
        chunk = b"abc" * 1000
        assert scrubber.feed(chunk) is chunk
        assert scrubber.held == 0 and scrubber.flush() == b""
        assert scrubber.replace_all(chunk) is chunk


def test_bytes_that_cannot_begin_a_secret_are_not_held_back() -> None:
    # An event stream waits for each answer: a short line must go out at once.
    scrubber = Scrubber({SECRET: PLACEHOLDER})
    assert scrubber.feed(b"data: hello\n\n") == b"data: hello\n\n"
    assert scrubber.held == 0
    # The beginning of the secret is held, and released (replaced) once it completes.
    assert scrubber.feed(b"x" + SECRET[:10]) == b"x"
    assert scrubber.held == 10
    assert scrubber.feed(SECRET[10:] + b"!") == PLACEHOLDER + b"!"


def test_replace_all_leaves_the_stream_alone() -> None:
    scrubber = Scrubber({SECRET: PLACEHOLDER})
    assert scrubber.feed(b"a" + SECRET[:5]) == b"a"
    assert scrubber.replace_all(b"h: " + SECRET) == b"h: " + PLACEHOLDER
    assert scrubber.feed(SECRET[5:]) == PLACEHOLDER
    assert scrubber.replaced == 2


def test_streams_share_rules_but_not_state() -> None:
    rules = ScrubRules({SECRET: PLACEHOLDER})
    one, two = Scrubber(rules), Scrubber(rules)
    assert one.feed(SECRET[:9]) == b""
    assert two.feed(SECRET[9:]) == SECRET[9:]
    assert one.feed(SECRET[9:]) == PLACEHOLDER


# --- overlapping secrets ----------------------------------------------------------------


def every_chunking(data: bytes, pairs: dict[bytes, bytes]) -> set[bytes]:
    """The outputs for: one chunk, one byte per chunk, and every cut in two."""
    cutss = [[], list(range(1, len(data))), *([c] for c in range(1, len(data)))]
    return {scrub(data, cuts, pairs) for cuts in cutss}


def test_the_longer_of_two_secrets_sharing_a_beginning_wins() -> None:
    short, long_ = b"abcdefgh12345678", b"abcdefgh12345678ZZZZZZZZ"
    pairs = {short: b"S" * 16, long_: b"L" * 24}
    data = b"x" + long_ + b"y" + short + b"z" + long_
    assert every_chunking(data, pairs) == {b"x" + b"L" * 24 + b"y" + b"S" * 16 + b"z" + b"L" * 24}
    # Whichever order they are given in.
    assert every_chunking(data, dict(reversed(pairs.items()))) == every_chunking(data, pairs)


def test_a_secret_inside_another_leaves_nothing_of_either() -> None:
    outer, inner = b"ABCDEFGH-inner-secret-IJKLMNOP", b"inner-secret"
    pairs = {outer: b"O" * len(outer), inner: b"I" * len(inner)}
    data = b".." + outer + b".." + inner + b".."
    assert every_chunking(data, pairs) == {
        b".." + b"O" * len(outer) + b".." + b"I" * len(inner) + b".."
    }


def test_overlapping_secrets_are_both_replaced() -> None:
    # The end of one is the beginning of the other: neither may survive in part.
    first, second = b"first-half-SHARED", b"SHARED-second-half"
    pairs = {first: b"1" * 17, second: b"2" * 18}
    data = b"<" + b"first-half-SHARED-second-half" + b">"
    assert every_chunking(data, pairs) == {b"<" + b"1" * 17 + b"2" * 18 + b">"}
    # Overlapping occurrences of one secret, too.
    periodic = b"abcabcabcabc"
    assert every_chunking(b"-abcabcabcabcabc-", {periodic: b"P" * 12}) == {b"-" + b"P" * 24 + b"-"}


# --- encoded bodies ---------------------------------------------------------------------


@pytest.mark.parametrize("urlsafe", [False, True])
@pytest.mark.parametrize("alignment", [0, 1, 2])
@pytest.mark.parametrize("where", ["middle", "end"])
def test_base64_at_every_alignment_no_longer_decodes_to_the_secret(
    alignment: int, urlsafe: bool, where: str
) -> None:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    decode = base64.urlsafe_b64decode if urlsafe else base64.b64decode
    before = b"user:"[: 3 + alignment]
    after = b" tail of the document" if where == "middle" else b""
    assert len(before) % 3 == alignment
    data = encode(before + SECRET + after)

    def check(decoded: bytes) -> None:
        assert SECRET not in decoded
        # No 4 bytes of it survive: only a few bits of the bytes at its edges may.
        assert not any(SECRET[i : i + 4] in decoded for i in range(len(SECRET) - 3))
        assert PLACEHOLDER[1:-1] in decoded  # equal lengths: the placeholder, edges aside
        assert decoded.startswith(before[:-1]) and decoded.endswith(after)
        if where == "end":
            # The last character, with its padding, is replaced too: nothing of the
            # secret's last byte is left.
            assert decoded.endswith(PLACEHOLDER[1:])

    rng = random.Random(alignment)
    for _ in range(20):
        check(decode(scrub(data, [rng.randrange(len(data)) for _ in range(rng.randrange(8))])))
    # Unpadded, as in JWTs.
    out = scrub(data.rstrip(b"="), [len(data) // 2])
    check(decode(out + b"=" * (-len(out) % 4)))


@pytest.mark.parametrize("urlsafe", [False, True])
@pytest.mark.parametrize("alignment", [0, 1, 2])
def test_base64_ending_with_the_secret_stays_valid_with_a_placeholder_of_another_length(
    alignment: int, urlsafe: bool
) -> None:
    # Basic auth echoed back: base64("user:" + key). The secret's last character and
    # padding give way to the placeholder's own, so the answer still decodes.
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    decode = base64.urlsafe_b64decode if urlsafe else base64.b64decode
    before = b"user:"[: 3 + alignment]
    for secret in (SECRET, SECRET[:-1], SECRET[:-2]):  # every ending
        for ph in (b"gigmcp_ph_" + b"x" * n for n in range(20, 26)):
            out = scrub(encode(before + secret), [7], {secret: ph})
            assert len(out) % 4 == 0
            decoded = decode(out)
            assert decoded.startswith(before[:-1]) and decoded.endswith(ph[1:])
            assert len(decoded) == len(before) + len(ph)


def test_percent_forms_in_a_url_encoded_body() -> None:
    text = SECRET.decode()
    body = urllib.parse.urlencode({"a": "1", "token": text, "b": text}).encode()
    lower = pct_lower(urllib.parse.urlencode({"c": text}, quote_via=urllib.parse.quote))
    data = body + b"&" + lower.encode()
    out = scrub(data, list(range(3, len(data), 7)))
    ph = PLACEHOLDER.decode()
    assert urllib.parse.parse_qs(out.decode()) == {"a": ["1"], "token": [ph], "b": [ph], "c": [ph]}
    # A placeholder with characters to encode is encoded the same way.
    odd = b"gigmcp/ph+" + b"R" * (len(SECRET) - 10)
    out = Scrubber({SECRET: odd}).replace_all(data)
    assert urllib.parse.parse_qs(out.decode())["token"] == [odd.decode()]
    assert urllib.parse.parse_qs(out.decode())["c"] == [odd.decode()]


@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_json_escaped_secret_with_slash_quote_and_non_ascii(ensure_ascii: bool) -> None:
    doc = json.dumps({"echo": SECRET.decode(), "n": 1}, ensure_ascii=ensure_ascii).encode()
    want = {"echo": PLACEHOLDER.decode(), "n": 1}
    slashed = doc.replace(b"/", b"\\/")  # as PHP writes it
    # Upper-case \u escapes, as other encoders write them.
    upper = re.sub(rb"\\u([0-9a-f]{4})", lambda m: b"\\u" + m[1].upper(), doc)
    for data in (doc, slashed, upper):
        assert json.loads(data) == {"echo": SECRET.decode(), "n": 1}
        assert json.loads(scrub(data, [5, 20, 21, 22])) == want


# --- detecting --------------------------------------------------------------------------

PH_A = b"gigmcp_ph_AbCdEfGhIjKlMnOpQrStUvWxYz012345"
PH_B = b"gigmcp_ph_ZyXwVuTsRqPoNmLkJiHgFeDcBa987654"


def feed_all(detector: Detector, data: bytes, cuts: list[int]) -> set[str]:
    found: set[str] = set()
    last = 0
    for cut in [*sorted(cuts), len(data)]:
        found |= detector.feed(data[last:cut])
        last = cut
    return found


def test_the_detector_finds_a_placeholder_split_at_any_position() -> None:
    data = b"GET /?q=1 HTTP/1.1\r\nx-thing: " + PH_A + b"\r\n\r\n"
    start = data.index(PH_A)
    for cut in range(start - 1, start + len(PH_A) + 2):
        assert feed_all(Detector({PH_A: "a", PH_B: "b"}), data, [cut]) == {"a"}
    one_by_one = list(range(1, len(data)))
    assert feed_all(Detector({PH_A: "a", PH_B: "b"}), data, one_by_one) == {"a"}


@pytest.mark.parametrize(
    "spell",
    [
        lambda v: base64.b64encode(b"user:" + v),
        lambda v: base64.urlsafe_b64encode(b"xy" + v + b"!"),
        lambda v: base64.b64encode(v),
        lambda v: urllib.parse.quote(b"a b " + v).encode(),
        lambda v: json.dumps({"k": "x/" + v.decode()}).encode(),
    ],
)
def test_the_detector_finds_encoded_placeholders(spell: Callable[[bytes], bytes]) -> None:
    data = b"prefix&" + spell(PH_B) + b"&suffix"
    assert Detector({PH_A: "a", PH_B: "b"}).scan(data) == {"b"}
    assert feed_all(Detector({PH_A: "a", PH_B: "b"}), data, list(range(2, len(data), 5))) == {"b"}


def test_the_detector_finds_every_spelling_split_at_any_position() -> None:
    # Not a placeholder's shape: its percent form is its longest spelling, and contains
    # no other one, so a split one byte before its end must still be found.
    needle = b'ph/"/"/"/"/"/"/"/"/"/"/"'
    for form in encoded_forms(needle):
        data = b"<" + form + b">"
        for cut in range(len(data) + 1):
            assert feed_all(Detector({needle: "n"}), data, [cut]) == {"n"}


def test_the_detector_reports_each_occurrence_once_in_the_chunk_it_completes() -> None:
    detector = Detector({PH_A: "a", PH_B: "b"})
    assert detector.feed(b"xx" + PH_A[:20]) == set()
    assert detector.feed(PH_A[20:] + b"yy") == {"a"}
    assert detector.feed(b"zz") == set()  # still in the tail: not reported again
    assert detector.feed(PH_B + PH_A) == {"a", "b"}
    # A fresh stream over the same needles starts with nothing held.
    fresh = Detector(detector)
    assert fresh.feed(PH_A[20:]) == set()
    assert fresh.scan(PH_B) == {"b"}


def test_the_detector_names_every_needle_even_one_inside_another() -> None:
    longer = PH_A + b"More"
    detector = Detector({PH_A: "a", longer: "long", PH_B: "b"})
    assert detector.scan(b"x" + longer) == {"a", "long"}
    assert detector.scan(base64.b64encode(longer)) == {"a", "long"}
    assert feed_all(Detector(detector), b"x" + longer + PH_B, [20, 45]) == {"a", "long", "b"}
    assert detector.scan(PH_A + b"Mor") == {"a"}


def test_the_detector_finds_nothing_in_random_data() -> None:
    data = random.Random(1).randbytes(1 << 20)
    detector = Detector({PH_A: "a", PH_B: "b", placeholder("gigmcp_ph_"): "c"})
    assert detector.scan(data) == set()
    assert feed_all(Detector(detector), data, list(range(0, len(data), 4096))) == set()
    assert Detector({}).feed(PH_A) == set() and Detector({}).scan(PH_A) == set()


# --- placeholders -----------------------------------------------------------------------


def test_placeholders_are_fresh_letters_and_digits_with_128_bits_or_more() -> None:
    made = {placeholder("gigmcp_ph_") for _ in range(2000)}
    assert len(made) == 2000
    assert len({len(p) for p in made}) == 1
    for p in made:
        assert re.fullmatch(rb"gigmcp_ph_[A-Za-z0-9]+", p)
        assert (len(p) - 10) * math.log2(62) >= 192
        # Unchanged by the text encodings.
        assert encoded_forms(p)[0] == p
        assert urllib.parse.quote(p, safe="").encode() == p
        assert json.dumps(p.decode())[1:-1].encode() == p
    # Every symbol turns up: the token is spread over the whole alphabet.
    assert set(b"".join(p[10:] for p in made)) == set(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    )
    assert len(placeholder("", 16)) == math.ceil(128 / math.log2(62))


@pytest.mark.parametrize("prefix", ["Gig_", "ph-", "ph ", "a" * 33, "é", "ph_\n"])
def test_a_bad_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        placeholder(prefix)


def test_fewer_than_128_bits_is_refused() -> None:
    with pytest.raises(ValueError, match="random bytes"):
        placeholder("ph_", 15)


# --- header names ------------------------------------------------------------------------


@pytest.mark.parametrize("form", encoded_forms(SECRET))
def test_a_secret_in_any_spelling_is_found_in_a_lowercased_header_name(form: bytes) -> None:
    # h11 lower-cases header names; a lower-cased secret is still most of the secret.
    scrubber = Scrubber({SECRET: PLACEHOLDER})
    assert scrubber.found_folded(b"x-leak-" + form.lower())
    assert scrubber.found_folded(b"x-leak-" + form)
    assert scrubber.held == 0


def test_an_innocent_header_name_is_not_found() -> None:
    assert not Scrubber({SECRET: PLACEHOLDER}).found_folded(b"content-type")
    assert not Scrubber({}).found_folded(b"x-anything")


# --- reprs ------------------------------------------------------------------------------


def test_no_repr_shows_a_secret_or_a_placeholder() -> None:
    scrubber = Scrubber({SECRET: PLACEHOLDER})
    scrubber.feed(b"x" + SECRET + SECRET[:12])
    objects = [scrubber, ScrubRules({SECRET: PLACEHOLDER}), Detector({PLACEHOLDER: "cred"})]
    for text in map(repr, objects):
        for value in (SECRET, PLACEHOLDER):
            for form in encoded_forms(value):
                for i in range(len(form) - 4):
                    assert form[i : i + 5].decode("latin-1") not in text
    assert (
        repr(scrubber) == f"Scrubber({len(encoded_forms(SECRET))} spellings, 1 replaced, 12 held)"
    )
