"""The ID token, verified: the only way a claim from the identity provider is believed.

Owns checking a compact JWS ID token with joserfc (a well-kept JOSE library; JWT code is
not written here by hand): the signature against the provider's JWKS with an algorithm
from a fixed asymmetric allowlist (never ``none``, never an HMAC, so a public key can
never be used as a shared secret), the header's ``kid`` found in the key set (the caller
refreshes the set once on an unknown ``kid``), ``iss`` exactly the configured issuer,
``aud`` containing our client id and ``azp`` equal to it when there are several
audiences, ``exp`` and ``iat`` within a small skew, and ``nonce`` equal to the one this
sign-in sent. It must never accept a token that fails any of these, or read a claim
before all have passed.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from gigmcp.errors import Unauthenticated

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA")
SKEW_S = 60
MAX_TOKEN_BYTES = 16 * 1024


class UnknownKey(Unauthenticated):
    """The token names a key the cached key set does not hold (rotated keys)."""


@dataclass(frozen=True, slots=True)
class Expected:
    issuer: str
    client_id: str
    nonce: str


def verify_id_token(
    token: str, keys: KeySet, expected: Expected, now: float | None = None
) -> Mapping[str, Any]:
    if len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
        raise Unauthenticated("the ID token is not a compact JWS")
    try:
        head = jws.extract_compact(token.encode()).headers()
    except (JoseError, ValueError):
        raise Unauthenticated("the ID token is not a well-formed JWT") from None
    alg = head.get("alg")
    if alg not in ALGORITHMS:
        raise Unauthenticated(f"the ID token's algorithm {str(alg)[:16]!r} is not accepted")
    kid = head.get("kid")
    if kid is not None and not any(k.kid == kid for k in keys.keys):
        raise UnknownKey("the ID token is signed by a key the provider does not list")
    try:
        decoded = jwt.decode(token, keys, algorithms=[alg])
    except (JoseError, ValueError):
        raise Unauthenticated("the ID token's signature does not verify") from None
    claims = decoded.claims
    clock = int(now if now is not None else time.time())
    _check(claims, expected, clock)
    return claims


def _check(claims: Mapping[str, Any], expected: Expected, now: int) -> None:
    if claims.get("iss") != expected.issuer:
        raise Unauthenticated("the ID token comes from another issuer")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if expected.client_id not in audiences:
        raise Unauthenticated("the ID token is for another client")
    if len(audiences) > 1 and claims.get("azp") != expected.client_id:
        raise Unauthenticated("the ID token has several audiences and another azp")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or exp + SKEW_S < now:
        raise Unauthenticated("the ID token has expired")
    if not isinstance(iat, int | float) or iat - SKEW_S > now:
        raise Unauthenticated("the ID token is issued in the future")
    nonce = claims.get("nonce")
    if not isinstance(nonce, str) or not hmac.compare_digest(
        nonce.encode(), expected.nonce.encode()
    ):
        raise Unauthenticated("the ID token's nonce is not this sign-in's")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise Unauthenticated("the ID token names no subject")
