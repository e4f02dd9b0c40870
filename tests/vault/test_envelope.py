"""The envelope format, attack by attack: a ciphertext opens only with the right master
key, untouched, in its own row."""

from __future__ import annotations

import os

import pytest

from gigmcp.errors import VaultError
from gigmcp.vault import envelope
from gigmcp.vault.keys import Keyring, MasterKey

KEY = MasterKey(bytes(range(32)))
OTHER = MasterKey(bytes(range(1, 33)))
AAD = b"row-1\0owner-7\0server-3\0github_token"
SECRET = b"ghp_realKey_5d1f0c9a7e2b4f68a0c3"


def test_a_sealed_value_opens_with_its_key_and_row() -> None:
    blob = envelope.seal(KEY, SECRET, AAD)
    assert envelope.open_(Keyring(KEY), blob, AAD) == SECRET
    assert SECRET not in blob
    assert envelope.key_id(blob) == KEY.key_id
    assert len(blob) == envelope.OVERHEAD + len(SECRET)


def test_attack_the_wrong_master_key_opens_nothing() -> None:
    blob = envelope.seal(KEY, SECRET, AAD)
    # Another key that claims the same id (the header is what names the key).
    impostor = Keyring(OTHER)
    impostor._by_id[KEY.key_id] = OTHER
    with pytest.raises(VaultError, match="does not open"):
        envelope.open_(impostor, blob, AAD)
    with pytest.raises(VaultError, match="not configured"):
        envelope.open_(Keyring(OTHER), blob, AAD)


def test_attack_one_flipped_bit_anywhere_is_refused() -> None:
    blob = envelope.seal(KEY, SECRET, AAD)
    for i in range(len(blob)):
        for bit in (0x01, 0x80):
            tampered = bytearray(blob)
            tampered[i] ^= bit
            with pytest.raises(VaultError):
                envelope.open_(Keyring(KEY), bytes(tampered), AAD)


@pytest.mark.parametrize("keep", [0, 1, 2, 10, envelope.HEADER, envelope.OVERHEAD - 1, -1])
def test_attack_truncated_ciphertext_is_refused(keep: int) -> None:
    blob = envelope.seal(KEY, SECRET, AAD)
    with pytest.raises(VaultError):
        envelope.open_(Keyring(KEY), blob[:keep], AAD)


def test_attack_extended_ciphertext_is_refused() -> None:
    blob = envelope.seal(KEY, SECRET, AAD)
    with pytest.raises(VaultError):
        envelope.open_(Keyring(KEY), blob + b"\0", AAD)


@pytest.mark.parametrize(
    "other_row",
    [
        b"row-2\0owner-7\0server-3\0github_token",  # another row of the same owner
        b"row-1\0owner-8\0server-3\0github_token",  # another user
        b"row-1\0owner-7\0server-4\0github_token",  # another server
        b"row-1\0owner-7\0server-3\0slack_token",  # another credential
        b"",
    ],
)
def test_attack_a_ciphertext_moved_to_another_row_does_not_open(other_row: bytes) -> None:
    blob = envelope.seal(KEY, SECRET, AAD)
    with pytest.raises(VaultError, match="does not open"):
        envelope.open_(Keyring(KEY), blob, other_row)


def test_attack_wrapped_key_and_value_from_two_ciphertexts_do_not_combine() -> None:
    a = envelope.seal(KEY, b"secret-a-0123456789", AAD)
    b = envelope.seal(KEY, b"secret-b-0123456789", AAD)
    cut = envelope.HEADER + envelope.WRAPPED
    with pytest.raises(VaultError):
        envelope.open_(Keyring(KEY), a[:cut] + b[cut:], AAD)


def test_nonces_and_data_keys_never_repeat() -> None:
    nonces: set[bytes] = set()
    wrapped: set[bytes] = set()
    for _ in range(20_000):
        blob = envelope.seal(KEY, SECRET, AAD)
        h, w = envelope.HEADER, envelope.WRAPPED
        nonces.add(blob[h : h + envelope.NONCE])
        nonces.add(blob[h + w : h + w + envelope.NONCE])
        wrapped.add(blob[h + envelope.NONCE : h + w])
    assert len(nonces) == 40_000
    assert len(wrapped) == 20_000


def test_rewrap_moves_the_data_key_under_the_new_master_and_keeps_the_value() -> None:
    blob = envelope.seal(KEY, SECRET, AAD)
    moved = envelope.rewrap(Keyring(KEY), blob, AAD, OTHER)
    assert envelope.key_id(moved) == OTHER.key_id
    assert moved[envelope.HEADER + envelope.WRAPPED :] == blob[envelope.HEADER + envelope.WRAPPED :]
    assert envelope.open_(Keyring(OTHER), moved, AAD) == SECRET
    with pytest.raises(VaultError, match="not configured"):
        envelope.open_(Keyring(KEY), moved, AAD)


def test_attack_rewrap_refuses_what_does_not_open() -> None:
    blob = bytearray(envelope.seal(KEY, SECRET, AAD))
    blob[-1] ^= 1
    with pytest.raises(VaultError):
        envelope.rewrap(Keyring(KEY), bytes(blob), AAD, OTHER)


def test_keys_never_show_themselves() -> None:
    key = MasterKey(os.urandom(32))
    for text in (repr(key), str(key), repr(Keyring(key))):
        assert key.key.hex() not in text
        assert key.key_id_hex in text
    with pytest.raises(VaultError, match="32 bytes"):
        MasterKey(b"short")
