"""Profile tokens: ``gig_pt_`` + 256 bits of CSPRNG output, stored only as SHA-256.

A token is shown exactly once, at mint time. A fast hash is right here: the token has
256 bits of entropy, so nothing can be guessed offline. Comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

PREFIX = "gig_pt_"
_BYTES = 32


def mint() -> str:
    return PREFIX + secrets.token_urlsafe(_BYTES)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def display(token: str) -> str:
    """A harmless handle for listings: the prefix and four characters, never more."""
    return token[: len(PREFIX) + 4] + "…"


def matches(token: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(token).encode(), stored_digest.encode())


def well_formed(token: str) -> bool:
    return token.startswith(PREFIX) and 40 <= len(token) <= 128
