"""The envelope format: one secret, sealed under a data key of its own, wrapped by the
master key. XChaCha20-Poly1305 (libsodium, through PyNaCl) at both layers.

Layout (all lengths fixed, so nothing is parsed from attacker-chosen lengths)::

    magic "GV" | version 1 | master key id (8)           -- the header, 11 bytes
    nonce_w (24) | wrap(data key) (32 + 16)               -- the data key under the master key
    nonce_p (24) | seal(plaintext) (len + 16)             -- the value under the data key

Both AEAD layers authenticate the header and the caller's associated data, which binds
a ciphertext to its row (record id, owner, credential): moved to another row, or with
its header edited to name another key, it no longer opens. Every nonce is 24 random
bytes, which XChaCha20 makes safe to draw at random.

Owns sealing, opening and re-wrapping (rotation: a new master key wraps the same data
key; the sealed value is untouched). It must never return partial plaintext, never
leave a data key in memory it can clear, and never say in an error more than which
check failed.
"""

from __future__ import annotations

import ctypes
import os

from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt as _open,
)
from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_encrypt as _seal,
)
from nacl.exceptions import CryptoError

from gigmcp.errors import VaultError
from gigmcp.vault.keys import KEY_BYTES, KEY_ID_BYTES, Keyring, MasterKey

MAGIC = b"GV"
VERSION = 1
NONCE = 24
TAG = 16
HEADER = len(MAGIC) + 1 + KEY_ID_BYTES
WRAPPED = NONCE + KEY_BYTES + TAG
OVERHEAD = HEADER + WRAPPED + NONCE + TAG


def _wipe(buf: bytearray) -> None:
    # Python cannot promise no copy survives (PyNaCl takes immutable bytes), but the
    # buffer we own is cleared rather than left for the allocator to hand out.
    if buf:
        ctypes.memset((ctypes.c_char * len(buf)).from_buffer(buf), 0, len(buf))


def header_of(key: MasterKey) -> bytes:
    return MAGIC + bytes([VERSION]) + key.key_id


def _value_aad(aad: bytes) -> bytes:
    # The value layer authenticates the format and the row, not the master key id: a
    # rotation re-wraps the data key and leaves the sealed value as it is.
    return MAGIC + bytes([VERSION]) + aad


def _wrap(master: MasterKey, data_key: bytearray, aad: bytes) -> bytes:
    header = header_of(master)
    nonce_w = os.urandom(NONCE)
    return header + nonce_w + _seal(bytes(data_key), header + aad, nonce_w, master.key)


def seal(key: MasterKey, plaintext: bytes, aad: bytes) -> bytes:
    data_key = bytearray(os.urandom(KEY_BYTES))
    try:
        nonce_p = os.urandom(NONCE)
        sealed = _seal(plaintext, _value_aad(aad), nonce_p, bytes(data_key))
        return _wrap(key, data_key, aad) + nonce_p + sealed
    finally:
        _wipe(data_key)


def key_id(blob: bytes) -> bytes:
    """The id of the master key a ciphertext was sealed under (from its header)."""
    _check_shape(blob)
    return blob[3:HEADER]


def _check_shape(blob: bytes) -> None:
    if len(blob) < OVERHEAD:
        raise VaultError("ciphertext is truncated")
    if blob[:2] != MAGIC:
        raise VaultError("not a vault ciphertext")
    if blob[2] != VERSION:
        raise VaultError(f"unknown vault format version {blob[2]}")


_DOES_NOT_OPEN = "ciphertext does not open: wrong master key, tampered, or moved from another row"


def _unwrap(keyring: Keyring, blob: bytes, aad: bytes) -> bytearray:
    _check_shape(blob)
    header = blob[:HEADER]
    master = keyring.find(blob[3:HEADER])
    nonce_w = blob[HEADER : HEADER + NONCE]
    try:
        return bytearray(
            _open(blob[HEADER + NONCE : HEADER + WRAPPED], header + aad, nonce_w, master.key)
        )
    except CryptoError:
        raise VaultError(_DOES_NOT_OPEN) from None


def open_(keyring: Keyring, blob: bytes, aad: bytes) -> bytes:
    data_key = _unwrap(keyring, blob, aad)
    try:
        nonce_p = blob[HEADER + WRAPPED : HEADER + WRAPPED + NONCE]
        sealed = blob[HEADER + WRAPPED + NONCE :]
        return _open(sealed, _value_aad(aad), nonce_p, bytes(data_key))
    except CryptoError:
        raise VaultError(_DOES_NOT_OPEN) from None
    finally:
        _wipe(data_key)


def rewrap(keyring: Keyring, blob: bytes, aad: bytes, to: MasterKey) -> bytes:
    """The same secret with its data key wrapped by ``to`` instead; the sealed value is
    kept byte for byte. The value is opened once first, so a ciphertext that would not
    open is never carried over under the new key."""
    open_(keyring, blob, aad)
    data_key = _unwrap(keyring, blob, aad)
    try:
        return _wrap(to, data_key, aad) + blob[HEADER + WRAPPED :]
    finally:
        _wipe(data_key)
