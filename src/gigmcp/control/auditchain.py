"""Proving the audit trails were not edited: verifying their hash chains and signed
checkpoints, and exporting them as JSON Lines for a SIEM (store/audit_chain.py does the
work).

Owns who may: administrators only (the chains hold every user's rows). It must never
change a row, and never export a secret (the rows hold none: store/models.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine

from gigmcp.control import users
from gigmcp.control.actor import Actor
from gigmcp.errors import Invalid
from gigmcp.store import audit_chain
from gigmcp.store.audit_chain import ChainReport
from gigmcp.vault.keys import Keyring

STREAMS = tuple(audit_chain.STREAMS)


def verify(engine: Engine, keyring: Keyring, actor: Actor) -> list[ChainReport]:
    """Each chain walked from its start or its anchoring checkpoint; see
    :func:`gigmcp.store.audit_chain.verify`."""
    users.require_admin(engine, actor)
    return audit_chain.verify(engine, keyring)


def export(
    engine: Engine, actor: Actor, stream: str, after_seq: int = 0
) -> Iterator[dict[str, Any]]:
    """One chain's rows after ``after_seq`` and its checkpoints, in order."""
    users.require_admin(engine, actor)
    if stream not in STREAMS:
        raise Invalid(f"stream: one of {', '.join(STREAMS)}, not {stream[:40]!r}")
    if after_seq < 0:
        raise Invalid("after: a position in the chain, 0 or more")
    return audit_chain.export(engine, stream, after_seq)
