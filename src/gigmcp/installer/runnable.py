"""What an installed package runs as: the fields of a server row that an install or an
upgrade sets.

Owns the :class:`Runnable` value that materialising a manifest produces and the
service layer stores. It must never hold a credential value (credentials appear as
definitions only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Runnable:
    """What to start, and what it may reach: everything a server row holds."""

    command: list[str]
    cwd: str | None
    env: dict[str, str]
    egress: dict[str, Any]
    credentials: list[dict[str, Any]]
    origin: dict[str, Any]  # kind, ref, name, version, manifest, hashes, path

    @property
    def runtime_hash(self) -> str:
        return str(self.origin["runtime_hash"])
