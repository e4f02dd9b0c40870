"""The registry index last accepted, remembered in the store so that an older one (a
rollback) is refused even after a restart or on another replica.

Owns reading and advancing that one row. It must never move it backwards.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from gigmcp.store.models import RegistryState


def last_accepted(engine: Engine) -> tuple[datetime, str] | None:
    """``(generated, sha256)`` of the index accepted last, if any."""
    with Session(engine) as s:
        row = s.scalar(select(RegistryState).where(RegistryState.id == 1))
        if row is None:
            return None
        return datetime.fromisoformat(row.generated), row.index_sha256


def accept(engine: Engine, generated: datetime, sha256: str) -> None:
    with Session(engine) as s, s.begin():
        row = s.scalar(select(RegistryState).where(RegistryState.id == 1).with_for_update())
        if row is None:
            s.add(
                RegistryState(
                    id=1,
                    generated=generated.isoformat(),
                    index_sha256=sha256,
                    accepted_at=datetime.now(UTC),
                )
            )
            return
        if generated < datetime.fromisoformat(row.generated):
            raise ValueError("refusing to move the accepted registry index backwards")
        row.generated = generated.isoformat()
        row.index_sha256 = sha256
        row.accepted_at = datetime.now(UTC)
