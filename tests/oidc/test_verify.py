"""The ID token check, attack by attack, with tokens signed by real keys (joserfc): each
forged or misdirected token is refused before a single claim is believed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from gigmcp.errors import Unauthenticated
from gigmcp.oidc import flow as flows
from gigmcp.oidc.provider import roles_from
from gigmcp.oidc.verify import Expected, UnknownKey, verify_id_token

ISS, CLIENT, NONCE = "https://idp.example.test", "gigmcp", "n-0123456789"
EXPECTED = Expected(ISS, CLIENT, NONCE)
RSA = RSAKey.generate_key(2048, parameters={"kid": "k1"})
KEYS = KeySet([RSA])


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": ISS, "aud": CLIENT, "sub": "alice", "nonce": NONCE, "iat": now, "exp": now + 300}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def signed(
    payload: dict[str, Any], key: Any = RSA, alg: str = "RS256", kid: str | None = "k1"
) -> str:
    header: dict[str, Any] = {"alg": alg}
    if kid is not None:
        header["kid"] = kid
    return jwt.encode(header, payload, key)


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_good_token_passes() -> None:
    assert verify_id_token(signed(claims()), KEYS, EXPECTED)["sub"] == "alice"


def test_attack_alg_none_is_refused() -> None:
    token = f"{b64({'alg': 'none', 'kid': 'k1'})}.{b64(claims())}."
    with pytest.raises(Unauthenticated, match="algorithm"):
        verify_id_token(token, KEYS, EXPECTED)


def test_attack_hmac_signed_with_the_public_key_is_refused() -> None:
    # Made by hand: joserfc itself refuses to use a public key as an HMAC secret.
    public_pem = RSA.as_pem(private=False)
    signing_input = f"{b64({'alg': 'HS256', 'kid': 'k1'})}.{b64(claims())}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    forged = signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    with pytest.raises(Unauthenticated, match="algorithm"):
        verify_id_token(forged, KEYS, EXPECTED)


def test_attack_a_token_signed_by_an_unknown_key_is_refused() -> None:
    stranger = RSAKey.generate_key(2048, parameters={"kid": "k1"})  # same kid, other key
    with pytest.raises(Unauthenticated, match="signature"):
        verify_id_token(signed(claims(), stranger), KEYS, EXPECTED)
    other_kid = RSAKey.generate_key(2048, parameters={"kid": "k9"})
    with pytest.raises(UnknownKey):
        verify_id_token(signed(claims(), other_kid, kid="k9"), KEYS, EXPECTED)


def test_attack_a_token_for_another_client_or_from_another_issuer_is_refused() -> None:
    with pytest.raises(Unauthenticated, match="another client"):
        verify_id_token(signed(claims(aud="someone-else")), KEYS, EXPECTED)
    with pytest.raises(Unauthenticated, match="another issuer"):
        verify_id_token(signed(claims(iss="https://evil.example")), KEYS, EXPECTED)
    several = claims(aud=[CLIENT, "other"], azp="other")
    with pytest.raises(Unauthenticated, match="azp"):
        verify_id_token(signed(several), KEYS, EXPECTED)
    assert verify_id_token(signed(claims(aud=[CLIENT, "other"], azp=CLIENT)), KEYS, EXPECTED)


def test_attack_an_expired_or_future_token_is_refused() -> None:
    now = int(time.time())
    with pytest.raises(Unauthenticated, match="expired"):
        verify_id_token(signed(claims(exp=now - 120)), KEYS, EXPECTED)
    with pytest.raises(Unauthenticated, match="future"):
        verify_id_token(signed(claims(iat=now + 600)), KEYS, EXPECTED)
    # A small skew between clocks is not an attack.
    assert verify_id_token(signed(claims(exp=now - 30)), KEYS, EXPECTED)


def test_attack_another_sign_ins_nonce_is_refused() -> None:
    with pytest.raises(Unauthenticated, match="nonce"):
        verify_id_token(signed(claims(nonce="n-other")), KEYS, EXPECTED)
    with pytest.raises(Unauthenticated, match="nonce"):
        verify_id_token(signed(claims(nonce=None)), KEYS, EXPECTED)


def test_garbage_is_refused_without_a_traceback() -> None:
    for token in ("", "a.b", "a.b.c", "x" * 20000, "e30.e30.e30"):
        with pytest.raises(Unauthenticated):
            verify_id_token(token, KEYS, EXPECTED)


def test_the_sealed_flow_opens_only_with_its_key_and_in_time() -> None:
    key, other = b"k" * flows.KEY_BYTES, b"o" * flows.KEY_BYTES
    flow = flows.begin("/x")
    sealed = flows.seal(flow, key)
    assert flows.open_(sealed, key) == flow
    assert flow.state not in sealed and flow.verifier not in sealed
    with pytest.raises(Unauthenticated):
        flows.open_(sealed, other)
    with pytest.raises(Unauthenticated, match="too long"):
        flows.open_(sealed, key, now=flow.created + flows.LIFETIME_S + 1)
    with pytest.raises(Unauthenticated):
        flows.check_state(flow, flow.state + "x")
    flows.check_state(flow, flow.state)


def test_roles_come_from_a_list_or_an_object_claim() -> None:
    assert roles_from({"groups": ["a", "b", 3]}, "groups") == ("a", "b")
    zitadel = {"urn:zitadel:iam:org:project:roles": {"admin": {"1": "org"}, "viewer": {}}}
    assert roles_from(zitadel, "urn:zitadel:iam:org:project:roles") == ("admin", "viewer")
    assert roles_from({"realm_access": {"roles": ["x"]}}, "realm_access.roles") == ("x",)
    assert roles_from({"groups": "solo"}, "groups") == ("solo",)
    assert roles_from({}, "groups") == () and roles_from({"groups": ["a"]}, None) == ()
