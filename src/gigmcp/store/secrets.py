"""Secrets at rest: credential values (rows of ``credential_values``), the gateway's
own secrets (rows of ``vault_items``, such as the egress CA's key) and OAuth material
(rows of ``oauth_secrets``: client secrets, tokens, PKCE verifiers; ``store/oauth.py``
reads and writes them), each a vault ciphertext sealed by ``vault/envelope.py``.

Owns the associated data that binds a ciphertext to its row, writing and reading values
within a caller's transaction, and re-wrapping every row under a new master key in one
transaction (a rotation). It must never write a value in clear, log one, or return one
it could not authenticate.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gigmcp.errors import VaultError
from gigmcp.store.models import CredentialValue, OAuthSecret, VaultItem, utcnow
from gigmcp.vault import envelope
from gigmcp.vault.keys import Keyring

_AAD_PREFIX = b"gigmcp/credential-value/v1"


def row_aad(record_id: str, owner_id: int, server_id: int, credential_id: str) -> bytes:
    # NUL-separated: none of the parts can hold a NUL (ids are numbers, names are checked).
    parts = (record_id, str(owner_id), str(server_id), credential_id)
    return b"\0".join((_AAD_PREFIX, *(p.encode() for p in parts)))


def oauth_aad(record_id: str, kind: str, ref_id: int) -> bytes:
    return b"\0".join(
        (b"gigmcp/oauth-secret/v1", record_id.encode(), kind.encode(), str(ref_id).encode())
    )


Sealed = CredentialValue | VaultItem | OAuthSecret


def _aad_of(row: Sealed) -> bytes:
    if isinstance(row, VaultItem):
        return item_aad(row.name)
    if isinstance(row, OAuthSecret):
        return oauth_aad(row.record_id, row.kind, row.ref_id)
    return row_aad(row.record_id, row.owner_id, row.server_id, row.credential_id)


def item_aad(name: str) -> bytes:
    return b"gigmcp/vault-item/v1\0" + name.encode()


def get_item(s: Session, keyring: Keyring, name: str) -> bytes | None:
    """A secret of the gateway's own (the egress CA key), or None if never stored."""
    row = s.scalar(select(VaultItem).where(VaultItem.name == name))
    return None if row is None else envelope.open_(keyring, row.ciphertext, item_aad(name))


def add_item(s: Session, keyring: Keyring, name: str, value: bytes) -> None:
    """Store a new gateway secret; the unique name makes a concurrent second writer fail
    rather than overwrite the first."""
    blob = envelope.seal(keyring.current, value, item_aad(name))
    s.add(VaultItem(name=name, key_id=keyring.current.key_id_hex, ciphertext=blob))


def put(
    s: Session, keyring: Keyring, owner_id: int, server_id: int, credential_id: str, value: bytes
) -> None:
    """Set (or replace) a value. A replaced value gets a new record id, so the old
    ciphertext, should a copy survive somewhere, cannot be put back in its place."""
    if not value:
        raise VaultError("an empty credential value")
    row = s.scalar(
        select(CredentialValue).where(
            CredentialValue.owner_id == owner_id,
            CredentialValue.server_id == server_id,
            CredentialValue.credential_id == credential_id,
        )
    )
    record_id = secrets.token_hex(16)
    blob = envelope.seal(
        keyring.current, value, row_aad(record_id, owner_id, server_id, credential_id)
    )
    if row is None:
        s.add(
            CredentialValue(
                record_id=record_id,
                owner_id=owner_id,
                server_id=server_id,
                credential_id=credential_id,
                key_id=keyring.current.key_id_hex,
                ciphertext=blob,
            )
        )
    else:
        row.record_id = record_id
        row.key_id = keyring.current.key_id_hex
        row.ciphertext = blob
        row.updated_at = utcnow()


def get(
    s: Session, keyring: Keyring, owner_id: int, server_id: int, credential_id: str
) -> bytes | None:
    row = s.scalar(
        select(CredentialValue).where(
            CredentialValue.owner_id == owner_id,
            CredentialValue.server_id == server_id,
            CredentialValue.credential_id == credential_id,
        )
    )
    return None if row is None else envelope.open_(keyring, row.ciphertext, _aad_of(row))


def values_for(s: Session, keyring: Keyring, owner_id: int, server_id: int) -> dict[str, bytes]:
    """Every value an owner set for a server, by credential id."""
    rows = s.scalars(
        select(CredentialValue).where(
            CredentialValue.owner_id == owner_id, CredentialValue.server_id == server_id
        )
    )
    return {r.credential_id: envelope.open_(keyring, r.ciphertext, _aad_of(r)) for r in rows}


def owner_values(
    engine: Engine, keyring: Keyring, owner_id: int, server_id: int
) -> dict[str, bytes]:
    """:func:`values_for` in a session of its own: what a launch reads."""
    with Session(engine) as s:
        return values_for(s, keyring, owner_id, server_id)


def get_or_add_item(
    engine: Engine, keyring: Keyring, name: str, make: Callable[[], bytes]
) -> bytes:
    """The gateway secret ``name``, made by ``make()`` and sealed on first use. When
    another gateway on the same database adds it first, its value wins and ``make``'s
    is dropped, so every replica ends up with one."""
    with Session(engine) as s:
        blob = get_item(s, keyring, name)
    if blob is not None:
        return blob
    value = make()
    try:
        with Session(engine) as s, s.begin():
            add_item(s, keyring, name, value)
        return value
    except IntegrityError:
        with Session(engine) as s:
            blob = get_item(s, keyring, name)
        assert blob is not None, f"{name}: refused as a duplicate, then not found"
        return blob


@dataclass(frozen=True, slots=True)
class Rotation:
    rewrapped: int
    already_current: int
    key_id: str


def rotate(engine: Engine, keyring: Keyring) -> Rotation:
    """Re-wrap every value under the keyring's current key, all in one transaction: a
    failure half-way (a row that does not open, the process killed) commits nothing,
    and every row stays readable under the key it had."""
    target = keyring.current
    done = same = 0
    with Session(engine) as s, s.begin():
        # Postgres: lock the rows so a concurrent write cannot slip in between our read
        # and our update (SQLite serialises writers by itself).
        rows: list[Sealed] = []
        for model in (CredentialValue, VaultItem, OAuthSecret):
            query = select(model).order_by(model.id)
            if engine.dialect.name == "postgresql":
                query = query.with_for_update()
            rows.extend(s.scalars(query))
        for row in rows:
            if row.key_id == target.key_id_hex:
                same += 1
                continue
            row.ciphertext = envelope.rewrap(keyring, row.ciphertext, _aad_of(row), target)
            row.key_id = target.key_id_hex
            done += 1
    return Rotation(done, same, target.key_id_hex)


def key_ids(engine: Engine) -> dict[str, int]:
    """How many values (credentials and gateway secrets) each master key id holds."""
    out: dict[str, int] = {}
    with Session(engine) as s:
        for column in (CredentialValue.key_id, VaultItem.key_id, OAuthSecret.key_id):
            for kid in s.scalars(select(column)):
                out[kid] = out.get(kid, 0) + 1
    return out
