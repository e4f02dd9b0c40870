"""Handles to state one gateway process holds: which replica holds it, and for whom.

A parked MRTR call (its ``requestState``) and a task (its id) live in the process that
runs the upstream call: the stdio server waiting for its sampling answer is a child of
that replica. When several replicas share a database, a client's next request may land
on any of them, so the handle names its holder, and the replica that receives it can
hand the request to that holder (endpoint/relay.py). A handle reads
``<replica>.<random>.<tag>``, the tag an HMAC over kind, replica, random part and token
id under a key every replica shares (sealed in the vault): a replica relays only
handles it can verify were minted for the caller's token, so a client cannot make
replicas talk to each other on a guessed or borrowed handle.

Owns minting and reading handles. It must never accept a handle minted for another
token or another kind, and never say which replica holds a handle it cannot verify.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

_TAG_BYTES = 16


def derive(root: bytes, purpose: str) -> bytes:
    """A key for one purpose from the router's root key: one secret in the vault, no
    key used for two jobs."""
    return hmac.new(root, b"gigmcp-router:" + purpose.encode(), hashlib.sha256).digest()


def new_replica_id() -> str:
    """This process's name among replicas: random per start (a restarted replica holds
    nothing of its former life, so it must not answer to its old name)."""
    return secrets.token_hex(6)


class Handles:
    def __init__(self, key: bytes, replica: str) -> None:
        if not replica.isalnum():
            raise ValueError("a replica id is letters and digits")
        self._key = key
        self.replica = replica

    def _tag(self, kind: str, replica: str, ident: str, token_id: int) -> str:
        msg = f"{kind}\0{replica}\0{ident}\0{token_id}".encode()
        mac = hmac.new(self._key, msg, hashlib.sha256).digest()[:_TAG_BYTES]
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def mint(self, kind: str, token_id: int) -> str:
        ident = secrets.token_urlsafe(18)
        return f"{self.replica}.{ident}.{self._tag(kind, self.replica, ident, token_id)}"

    def holder(self, kind: str, handle: object, token_id: int) -> str | None:
        """The replica that minted ``handle`` for ``token_id``; None when it was not
        minted (by any replica) for this token and kind."""
        if not isinstance(handle, str) or len(handle) > 256:
            return None
        parts = handle.split(".")
        if len(parts) != 3:
            return None
        replica, ident, tag = parts
        if not replica.isalnum() or not hmac.compare_digest(
            tag.encode(), self._tag(kind, replica, ident, token_id).encode()
        ):
            return None
        return replica
