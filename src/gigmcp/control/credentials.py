"""Credential values, write-only: set, unset, and which are set; the vault's master key.

Owns checking a value before the vault seals it (size, no control character, what the
proxy could not put in a header) and the transactions that store or remove it, per
acting user and server; listing which declared credentials have a value; rotating the
master key and counting values per key id (an admin's business). It must never return,
log or put into an error a credential value: nothing here reads one back.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from gigmcp import errors
from gigmcp.control import rows
from gigmcp.control.actor import Actor
from gigmcp.core.definitions import DefinitionError, parse_credentials, parse_egress
from gigmcp.errors import Forbidden, Invalid, NotFound, VaultError
from gigmcp.store import secrets as vault_store
from gigmcp.store.models import CredentialValue, Server
from gigmcp.vault.keys import Keyring

MAX_VALUE = 64 * 1024


@dataclass(frozen=True, slots=True)
class CredentialStatus:
    """A declared credential, how it reaches the server, and whether the acting user has
    set a value for it (never the value)."""

    server: str
    credential_id: str
    kind: str  # sealed | entrusted
    is_set: bool


def set_credential(
    engine: Engine, keyring: Keyring, actor: Actor, server: str, credential_id: str, value: bytes
) -> None:
    """Store the acting user's value of a server's credential, sealed by the vault. The
    audit row names the credential, never the value."""
    if not value:
        raise Invalid("the value is empty (it is read from standard input)")
    if len(value) > MAX_VALUE:
        raise Invalid("the value is longer than 64 KiB")
    # No control character: a value goes into an HTTP header, where h11 would refuse it
    # with an error quoting the value (and errors get logged).
    if any(b < 0x20 or b == 0x7F for b in value):
        raise Invalid(
            "the value holds a line break, NUL or other control character (a trailing "
            "newline from echo is removed; use printf '%s' to be exact)"
        )
    with rows.change(engine, actor, "credential.set", server=server, detail=credential_id) as s:
        srv = rows.usable_server(s, actor, server)
        known = {c.get("id") for c in srv.credentials or []}
        if credential_id not in known:
            raise NotFound(
                f"server {server!r} declares no credential {credential_id!r}"
                + (f" (it declares: {', '.join(sorted(map(str, known)))})" if known else "")
            )
        # A sealed value travels in a header the proxy renders: one h11 would refuse
        # (a trailing space) is refused here, by what is wrong and never quoting it.
        try:
            defs = parse_credentials(srv.credentials, parse_egress(srv.egress))
        except DefinitionError as exc:
            raise Invalid(f"server {server!r}: {exc}") from None
        (cred,) = (c for c in defs if c.id == credential_id)
        problem = cred.value_problem(value) if cred.sealed else None
        if problem is not None:
            raise Invalid(f"{server}/{credential_id}: {problem}")
        vault_store.put(s, keyring, actor.user_id, srv.id, credential_id, value)


def unset_credential(engine: Engine, actor: Actor, server: str, credential_id: str) -> None:
    """Remove the acting user's value of a server's credential."""
    with rows.change(engine, actor, "credential.unset", server=server, detail=credential_id) as s:
        srv = rows.usable_server(s, actor, server)
        row = s.scalar(
            select(CredentialValue).where(
                CredentialValue.owner_id == actor.user_id,
                CredentialValue.server_id == srv.id,
                CredentialValue.credential_id == credential_id,
            )
        )
        if row is None:
            raise NotFound(f"no value is set for {server}/{credential_id}")
        s.delete(row)


def list_credentials(engine: Engine, actor: Actor) -> list[CredentialStatus]:
    """Every credential declared by a server the actor may see, by server name."""
    out = []
    with Session(engine) as s:
        have = {
            (r.server_id, r.credential_id)
            for r in s.scalars(
                select(CredentialValue).where(CredentialValue.owner_id == actor.user_id)
            )
        }
        query = select(Server).order_by(Server.name)
        if not actor.admin:
            mine_or_shared = [actor.user_id, *rows.shared_owner_ids(s)]
            query = query.where(Server.owner_id.in_(mine_or_shared))
        for srv in s.scalars(query):
            for c in srv.credentials or []:
                kind = "sealed" if "header" in c.get("inject", {}) else "entrusted"
                out.append(
                    CredentialStatus(srv.name, str(c["id"]), kind, (srv.id, c["id"]) in have)
                )
    return out


def key_counts(engine: Engine, actor: Actor) -> dict[str, int]:
    """How many sealed values each master key id holds."""
    _admin_only(actor, "see the vault's keys")
    return vault_store.key_ids(engine)


def rotate_master_key(engine: Engine, keyring: Keyring, actor: Actor) -> vault_store.Rotation:
    """Re-wrap every value under the keyring's current master key, in one transaction."""
    _admin_only(actor, "rotate the master key")
    stale = {k for k in vault_store.key_ids(engine) if k != keyring.current.key_id_hex}
    unknown = stale - set(keyring.ids)
    if unknown:
        raise errors.VaultError(
            f"values are sealed under key(s) {', '.join(sorted(unknown))}, which are not "
            "configured: set the old key as GIG_MASTER_KEY_PREVIOUS (or _FILE) and retry"
        )
    try:
        result = vault_store.rotate(engine, keyring)
    except VaultError as exc:
        raise errors.VaultError(f"rotation stopped, nothing changed: {exc}") from exc
    with rows.change(
        engine, actor, "vault.rotate", detail=f"{result.rewrapped} to {result.key_id}"
    ):
        pass
    return result


def _admin_only(actor: Actor, what: str) -> None:
    if not actor.admin:
        raise Forbidden(f"only an admin may {what}")
