"""Ed25519 over the raw bytes, in the reference's key and signature formats."""

from __future__ import annotations

import pytest

from gigmcp.registry.errors import SignatureError
from gigmcp.registry.signing import keygen, public_key_of, sign, verify

# RFC 8032, section 7.1, TEST 1 (empty message) and TEST 2 (one byte 0x72).
RFC_SEED = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
RFC_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
RFC_SIG_EMPTY = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
RFC2_SEED = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb"
RFC2_PUBLIC = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"
RFC2_SIG = "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"


def test_known_answer_vectors() -> None:
    private = RFC_SEED + RFC_PUBLIC  # Go's ed25519.PrivateKey layout: seed || public
    assert sign(private, b"") == RFC_SIG_EMPTY
    verify(RFC_PUBLIC, b"", RFC_SIG_EMPTY)
    assert sign(RFC2_SEED + RFC2_PUBLIC, b"\x72") == RFC2_SIG
    verify(RFC2_PUBLIC, b"\x72", RFC2_SIG)
    assert public_key_of(private) == RFC_PUBLIC


def test_keygen_formats_and_round_trip() -> None:
    private, public = keygen()
    assert len(private) == 128 and len(public) == 64
    assert private[64:] == public
    assert int(private, 16) >= 0 and private == private.lower()
    data = b'{"schemaVersion":1}'
    sig = sign(private, data)
    assert len(sig) == 128
    verify(public, data, sig)
    verify(f"  {public}\n", data, sig + "\n")  # the .sig file ends with a newline
    verify(public.upper(), data, sig.upper())  # hex is case-insensitive, as in Go


def test_tampering_and_wrong_keys_fail() -> None:
    private, public = keygen()
    data = bytes(range(64))
    sig = sign(private, data)
    tampered = bytearray(data)
    tampered[20] ^= 1
    with pytest.raises(SignatureError, match="^index signature verification FAILED$"):
        verify(public, bytes(tampered), sig)
    _, other_public = keygen()
    with pytest.raises(SignatureError, match="verification FAILED"):
        verify(other_public, data, sig)
    flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
    with pytest.raises(SignatureError, match="verification FAILED"):
        verify(public, data, flipped)


@pytest.mark.parametrize(
    ("public", "sig", "message"),
    [
        ("zz", "00" * 64, "public key must be 32 hex-encoded bytes"),
        ("00" * 31, "00" * 64, "public key must be 32 hex-encoded bytes"),
        ("é" * 64, "00" * 64, "public key must be 32 hex-encoded bytes"),
        (RFC_PUBLIC, "00" * 63, "signature must be 64 hex-encoded bytes"),
        (RFC_PUBLIC, "0 " * 64, "signature must be 64 hex-encoded bytes"),
        (RFC_PUBLIC, "00" * 64, "index signature verification FAILED"),
    ],
)
def test_malformed_inputs(public: str, sig: str, message: str) -> None:
    with pytest.raises(SignatureError) as info:
        verify(public, b"data", sig)
    assert str(info.value) == message


def test_signing_key_checks() -> None:
    with pytest.raises(SignatureError, match="^signing key must be 64 hex-encoded bytes$"):
        sign("zz", b"x")
    with pytest.raises(SignatureError, match="signing key must be 64 hex-encoded bytes"):
        sign(RFC_SEED, b"x")  # a bare seed is not the reference's format
    with pytest.raises(SignatureError, match="its public half does not match its seed") as info:
        sign(RFC_SEED + RFC2_PUBLIC, b"x")
    assert RFC_SEED not in str(info.value)  # key material is never echoed
