"""Master keys and the keyring that holds them.

Owns turning the configured master key(s) into :class:`MasterKey` objects with a stable
key id, and the keyring the vault reads with: the current key (used for every new
ciphertext) and, during a rotation, the previous one (read only). A key id is derived
from the key itself (a keyed BLAKE2b hash), so it needs no bookkeeping and names the
key without revealing it. It must never print, log or repr key material.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from gigmcp.errors import VaultError

KEY_BYTES = 32
KEY_ID_BYTES = 8


def key_id_of(key: bytes) -> bytes:
    return hashlib.blake2b(key, digest_size=KEY_ID_BYTES, person=b"gigmcp-key-id").digest()


@dataclass(frozen=True, slots=True)
class MasterKey:
    key: bytes = field(repr=False)
    key_id: bytes = field(init=False)

    def __post_init__(self) -> None:
        if len(self.key) != KEY_BYTES:
            raise VaultError(f"a master key is {KEY_BYTES} bytes, not {len(self.key)}")
        object.__setattr__(self, "key_id", key_id_of(self.key))

    @property
    def key_id_hex(self) -> str:
        return self.key_id.hex()

    def __repr__(self) -> str:
        return f"MasterKey(id={self.key_id_hex})"


class Keyring:
    """The current key and any others still readable (a rotation's previous key)."""

    def __init__(self, current: MasterKey, readable: Iterable[MasterKey] = ()) -> None:
        self.current = current
        self._by_id = {k.key_id: k for k in (*readable, current)}

    def find(self, key_id: bytes) -> MasterKey:
        found = self._by_id.get(key_id)
        if found is None:
            raise VaultError(
                f"this ciphertext was sealed under master key {key_id.hex()}, which is not "
                f"configured (current key: {self.current.key_id_hex}); set it as "
                "GIG_MASTER_KEY_PREVIOUS to read it, then run 'gigmcp vault rotate-master-key'"
            )
        return found

    @property
    def ids(self) -> list[str]:
        return sorted(k.hex() for k in self._by_id)

    def __repr__(self) -> str:
        return f"Keyring(current={self.current.key_id_hex}, ids={self.ids})"
