"""The gateway's health, for administrators: is the vault whole, is the registry's index
fresh, and what the host checks (``gigmcp doctor``) found.

Owns putting those together for an administrator (the real user, when viewing the
gateway as someone else). The host checks are run by whoever wires the gateway, on their
own schedule (they start processes: never once per page); this module only reads what
they found. It must never return a key, a value or anything sealed: only key ids and
counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from gigmcp.control import users
from gigmcp.control.actor import Actor
from gigmcp.sandbox.doctor import Check
from gigmcp.store import index_state
from gigmcp.store import secrets as vault_store
from gigmcp.vault.keys import Keyring


@dataclass(frozen=True, slots=True)
class Vault:
    current_key: str  # the id of the key new values are sealed with
    sealed: int  # values sealed in all
    # Values sealed under a key this gateway was not given: unreadable until it is.
    unreadable: int
    # Values still under a readable key that is not the current one (a rotation to run).
    to_rotate: int


@dataclass(frozen=True, slots=True)
class Registry:
    configured: bool
    generated: datetime | None  # when the last accepted index was made
    stale: bool  # older than GIG_REGISTRY_MAX_AGE


@dataclass(frozen=True, slots=True)
class Finding:
    name: str
    problem: str | None
    warning: str
    fix: str


@dataclass(frozen=True, slots=True)
class Health:
    vault: Vault | None  # None: no vault in this process
    registry: Registry
    # None: the host was not checked in this process (no jail, or checks not wired).
    host: tuple[Finding, ...] | None

    @property
    def problems(self) -> int:
        found = sum(1 for f in self.host or () if f.problem)
        if self.vault is not None and self.vault.unreadable:
            found += 1
        return found + (1 if self.registry.stale else 0)


def health(
    engine: Engine,
    actor: Actor,
    keyring: Keyring | None,
    registry_configured: bool,
    max_age: timedelta | None,
    host: Sequence[Check] | None,
) -> Health:
    users.require_admin(engine, actor)
    vault = None
    if keyring is not None:
        counts = vault_store.key_ids(engine)
        readable = set(keyring.ids)
        current = keyring.current.key_id_hex
        vault = Vault(
            current,
            sum(counts.values()),
            sum(n for kid, n in counts.items() if kid not in readable),
            sum(n for kid, n in counts.items() if kid in readable and kid != current),
        )
    last = index_state.last_accepted(engine)
    generated = last[0] if last else None
    if generated is not None and generated.tzinfo is None:
        generated = generated.replace(tzinfo=UTC)  # SQLite drops the zone
    stale = (
        registry_configured
        and max_age is not None
        and (generated is None or datetime.now(UTC) - generated > max_age)
    )
    findings = None
    if host is not None:
        findings = tuple(Finding(c.name, c.problem, c.warning, c.fix) for c in host)
    return Health(vault, Registry(registry_configured, generated, stale), findings)
