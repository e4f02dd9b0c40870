"""Naming a running server instance, and the references that tie a client's error to a log
line.

Owns :class:`InstanceKey` (DESIGN: one instance per server × profile) and
:func:`new_ref`. It must never carry more than the key needs: no process, no owner, no
secret.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class InstanceKey:
    """One running server instance: a server for a profile (DESIGN: one per server × profile)."""

    profile_id: int
    server_name: str

    def __str__(self) -> str:
        return f"{self.server_name}@profile-{self.profile_id}"


def new_ref() -> str:
    """A correlation id joining a client's error to the log line with its cause."""
    return secrets.token_hex(4)
