"""Ed25519 signatures over the exact index bytes, in the reference's formats.

* private key: 64 bytes, hex — seed followed by public key, as Go's
  ``ed25519.PrivateKey`` (what ``registryctl keygen`` prints and ``sign`` reads);
* public key: 32 bytes, hex (``GIG_REGISTRY_PUBKEY``);
* signature: 64 bytes, hex (the ``index.json.sig`` file; surrounding whitespace, such
  as its trailing newline, is ignored on input).

``verify`` works on the raw bytes as received and must be called before anything parses
them. Failures raise ``SignatureError`` saying which of key, signature or verification
failed.

Owns keygen/sign/verify. It must never put key material in a message or a log, and never
verify a re-serialized document instead of the bytes received.
"""

from __future__ import annotations

import binascii
import hmac

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from gigmcp.registry.errors import SignatureError

PRIVATE_KEY_BYTES = 64
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


def _unhex(text: str, size: int, what: str) -> bytes:
    try:
        raw = binascii.unhexlify(text.strip())
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != size:
        raise SignatureError(f"{what} must be {size} hex-encoded bytes")
    return raw


def keygen() -> tuple[str, str]:
    """A new key pair: (private_hex: seed+public, 64 bytes; public_hex: 32 bytes)."""
    key = SigningKey.generate()
    public = bytes(key.verify_key)
    return (bytes(key) + public).hex(), public.hex()


def _signing_key(private_hex: str) -> SigningKey:
    raw = _unhex(private_hex, PRIVATE_KEY_BYTES, "signing key")
    key = SigningKey(raw[:32])
    # Go trusts the second half; a key whose halves disagree would sign with a public
    # key nobody holds. Refuse it instead (constant time: it is key material).
    if not hmac.compare_digest(bytes(key.verify_key), raw[32:]):
        raise SignatureError("signing key is inconsistent: its public half does not match its seed")
    return key


def public_key_of(private_hex: str) -> str:
    return bytes(_signing_key(private_hex).verify_key).hex()


def sign(private_hex: str, data: bytes) -> str:
    """Hex signature over ``data`` exactly as given."""
    return _signing_key(private_hex).sign(bytes(data)).signature.hex()


def verify(public_hex: str, data: bytes, sig_hex: str) -> None:
    """Return if ``sig_hex`` is a valid signature of ``data``; ``SignatureError`` if not."""
    public = _unhex(public_hex, PUBLIC_KEY_BYTES, "public key")
    signature = _unhex(sig_hex, SIGNATURE_BYTES, "signature")
    try:
        VerifyKey(public).verify(bytes(data), signature)
    except (BadSignatureError, ValueError):
        raise SignatureError("index signature verification FAILED") from None
