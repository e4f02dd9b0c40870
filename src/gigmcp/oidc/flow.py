"""One sign-in in flight: the state, nonce and PKCE verifier a browser carries between
the redirect to the identity provider and its return, sealed in a short-lived cookie.

Owns making a flow (each secret from the CSPRNG; the S256 challenge), sealing it with a
key the caller takes from the vault (so every replica opens what another sealed) with
XSalsa20-Poly1305 (PyNaCl's SecretBox: encrypted and authenticated, so the browser can
neither read nor alter it), opening it (refused when tampered with, expired, or of
another shape) and checking a callback's ``state`` against it in constant time. It must
never put a secret in a URL other than the provider's own parameters, never accept a
flow older than its lifetime, and never accept a return path that leaves the gateway.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass

from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

from gigmcp.errors import Unauthenticated

LIFETIME_S = 600
KEY_BYTES = SecretBox.KEY_SIZE


@dataclass(frozen=True, slots=True)
class Flow:
    state: str
    nonce: str
    verifier: str
    return_to: str
    created: float

    @property
    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def begin(return_to: str | None) -> Flow:
    return Flow(
        state=secrets.token_urlsafe(32),
        nonce=secrets.token_urlsafe(32),
        verifier=secrets.token_urlsafe(48),  # 64 characters: RFC 7636 asks 43 to 128
        return_to=safe_return(return_to),
        created=time.time(),
    )


def safe_return(path: str | None) -> str:
    """Where to land after sign-in: a path on this gateway, never another site. Anything
    else (a scheme, ``//host``, a backslash some browsers read as a slash) is ``/``."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    if any(ord(c) < 0x21 for c in path) or len(path) > 512:
        return "/"
    return path


def seal(flow: Flow, key: bytes) -> str:
    box = SecretBox(key)
    data = json.dumps(asdict(flow), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(bytes(box.encrypt(data))).decode("ascii")


def open_(sealed: str | None, key: bytes, now: float | None = None) -> Flow:
    if not sealed or len(sealed) > 4096:
        raise Unauthenticated("no sign-in in progress in this browser; start again")
    try:
        raw = SecretBox(key).decrypt(base64.urlsafe_b64decode(sealed.encode("ascii")))
        data = json.loads(raw)
        flow = Flow(**data)
    except (CryptoError, ValueError, TypeError, UnicodeEncodeError):
        raise Unauthenticated("the sign-in state is not one this gateway made") from None
    age = (now if now is not None else time.time()) - flow.created
    if not 0 <= age <= LIFETIME_S:
        raise Unauthenticated("the sign-in took too long; start again")
    return flow


def check_state(flow: Flow, presented: str | None) -> None:
    if not presented or not hmac.compare_digest(presented.encode(), flow.state.encode()):
        raise Unauthenticated("the sign-in state does not match this browser's")
