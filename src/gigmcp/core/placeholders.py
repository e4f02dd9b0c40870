"""Placeholders: the stand-ins a sandbox holds instead of its sealed credentials, and the
per-instance table that pairs each one with its real value.

Owns minting placeholders (:func:`placeholder`, :func:`new_placeholder`) and the plain
records the credential provider fills and the egress proxy reads (:class:`Sealed`,
:class:`InstanceCredentials`). It must never show a value in a repr, and never mint a
placeholder with fewer than 128 random bits.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass, field
from typing import Protocol

from gigmcp.core.definitions import CredentialDef
from gigmcp.core.instances import InstanceKey
from gigmcp.core.views import ServerDef

PLACEHOLDER_PREFIX = "gigmcp_ph_"
_PREFIX = re.compile(r"[a-z0-9_]{0,32}")
# Letters and digits only: unchanged by every encoding a request may apply (raw,
# percent-encoded, JSON-escaped, base64), and shaped like an API key.
_ALPHABET = string.digits + string.ascii_letters
_MIN_ENTROPY_BYTES = 16  # 128 bits


def placeholder(prefix: str, nbytes: int = 24) -> bytes:
    """A new placeholder: ``prefix`` then ``nbytes`` random bytes written in base 62.

    The width is fixed (leading zeros kept), so all placeholders of one prefix have one
    length and carry exactly ``8 * nbytes`` bits; at least 128 are required.
    """
    if not _PREFIX.fullmatch(prefix):
        raise ValueError("placeholder prefix must match ^[a-z0-9_]{0,32}$")
    if nbytes < _MIN_ENTROPY_BYTES:
        raise ValueError(f"a placeholder needs at least {_MIN_ENTROPY_BYTES} random bytes")
    width = 1
    while 62**width < 256**nbytes:
        width += 1
    value = int.from_bytes(secrets.token_bytes(nbytes), "big")
    digits = []
    for _ in range(width):
        value, d = divmod(value, 62)
        digits.append(_ALPHABET[d])
    return (prefix + "".join(reversed(digits))).encode()


def new_placeholder() -> str:
    # Letters and digits only (unchanged by every encoding a request may apply, and
    # shaped like an API key), 24 random bytes: one generator for the whole project.
    return placeholder(PLACEHOLDER_PREFIX).decode()


class TokenSource(Protocol):
    """Where a connected account's current access token comes from (the token broker,
    ``credentials/oauth_broker.py``). Raises an ``AccountError`` when it has none."""

    async def access_token(self, user_id: int, vendor: str) -> bytes: ...

    async def refused(self, user_id: int, vendor: str, token: bytes) -> None:
        """A server refused ``token`` (401): the next ask refreshes, unless the account's
        current token is another one already."""
        ...


@dataclass(frozen=True, slots=True)
class Sealed:
    credential: CredentialDef
    placeholder: str
    value: bytes | None = field(repr=False)  # None: the owner has not set it
    # A connected account's vendor: the value is asked of the token source at each
    # request instead (``value`` is then None).
    vendor: str | None = None

    def __repr__(self) -> str:
        state = f"account {self.vendor}" if self.vendor else "set" if self.value else "not set"
        return f"Sealed({self.credential.id}, {state})"


@dataclass(frozen=True, slots=True)
class InstanceCredentials:
    key: InstanceKey
    owner_id: int
    server: ServerDef
    sealed: tuple[Sealed, ...] = ()
    tokens: TokenSource | None = None  # for the sealed credentials with a vendor

    def scrub_pairs(self) -> dict[bytes, bytes]:
        """Real value → placeholder, for every sealed value that is set."""
        return {s.value: s.placeholder.encode() for s in self.sealed if s.value}

    def __repr__(self) -> str:
        return f"InstanceCredentials({self.key}, owner={self.owner_id}, {list(self.sealed)})"
