"""The gateway's bearer secrets: a recognisable prefix per kind + 256 bits of CSPRNG
output, stored only as SHA-256.

Kinds stay apart: a profile token (``gig_pt_``) opens one profile's MCP endpoint and
nothing else; a browser session (``gig_ws_``), a personal API token (``gig_at_``) and a
one-time sign-in link (``gig_ll_``) open the control plane and never an MCP endpoint.
Each kind has its own prefix, checked before any lookup, and its own table, so a
secret of one kind is never even looked up as another. A CSRF token (``gig_cs_``) is
bound to one session. A secret is shown exactly once, when it is made. A fast hash is
right here: 256 bits of entropy leave nothing to guess offline. Comparisons are
constant-time. It must never log or store a secret in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

_BYTES = 32


@dataclass(frozen=True, slots=True)
class Kind:
    prefix: str

    def mint(self) -> str:
        return self.prefix + secrets.token_urlsafe(_BYTES)

    def well_formed(self, token: str) -> bool:
        return token.startswith(self.prefix) and 40 <= len(token) <= 128

    def display(self, token: str) -> str:
        """A harmless handle for listings: the prefix and four characters, never more."""
        return token[: len(self.prefix) + 4] + "…"


PROFILE = Kind("gig_pt_")
SESSION = Kind("gig_ws_")
API = Kind("gig_at_")
LOGIN_LINK = Kind("gig_ll_")
CSRF = Kind("gig_cs_")

# Profile tokens, as the MCP endpoint and the CLI have always called them.
PREFIX = PROFILE.prefix


def mint() -> str:
    return PROFILE.mint()


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def display(token: str) -> str:
    return PROFILE.display(token)


def matches(token: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(token).encode(), stored_digest.encode())


def well_formed(token: str) -> bool:
    return PROFILE.well_formed(token)
