"""The egress audit trail's rows: writing a batch, deleting the old ones.

Owns the ORM side of ``egress/audit.py``: one transaction per batch of rows, one per
prune. It must never decide what is recorded, when, or how much may wait (the egress
audit writer batches and bounds), and never runs on the event loop: callers hand it to
a worker thread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, insert

from gigmcp.store import activity
from gigmcp.store.models import EgressAuditRow


def insert_rows(engine: Engine, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (column name → value) and count them into the overview's egress
    counters, in one transaction."""
    with engine.begin() as conn:
        conn.execute(insert(EgressAuditRow), list(rows))
        activity.add_egress(
            conn, ((r["at"], r.get("owner_id"), r["decision"], r.get("count", 1)) for r in rows)
        )


def delete_before(engine: Engine, before: datetime) -> int:
    """Delete the rows recorded before ``before``; return how many went."""
    with engine.begin() as conn:
        result = conn.execute(delete(EgressAuditRow).where(EgressAuditRow.at < before))
        return int(result.rowcount or 0)
