"""Profile tokens: recognisable, 256 bits strong, stored only as a hash."""

from __future__ import annotations

import base64

from gigmcp.auth import tokens


def test_tokens_carry_256_bits_and_a_prefix() -> None:
    t = tokens.mint()
    assert t.startswith("gig_pt_")
    raw = base64.urlsafe_b64decode(t[len("gig_pt_") :] + "==")
    assert len(raw) >= 32
    assert len({tokens.mint() for _ in range(1000)}) == 1000


def test_only_the_hash_is_kept_and_it_matches_in_constant_time() -> None:
    t = tokens.mint()
    d = tokens.digest(t)
    assert t not in d and len(d) == 64
    assert tokens.matches(t, d)
    assert not tokens.matches(t + "x", d)
    assert tokens.display(t).endswith("…") and len(tokens.display(t)) < 16
