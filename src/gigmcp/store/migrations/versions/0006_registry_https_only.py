"""Registry servers lose plain HTTP: their stored egress grant drops port 80, as a
registry install now grants port 443 only (``installer.materialize.egress_grant``).

Registry installs used to store the egress default of their day, ports [443, 80]; the
grant in the row is what the proxy enforces, so without this those servers kept plain
HTTP, where anyone on the path reads and answers their requests. Only servers with an
install ``origin`` (0004) are touched, and an upgrade awaiting consent (``pending``) the
same way, so consenting to it later does not bring port 80 back. Servers added by hand
(no origin) keep what the operator chose; any other port an operator allowed on a
registry server stays. Rows are read and rewritten one by one, in Python: JSON functions
differ between SQLite and PostgreSQL, and there are few servers.

Revision ID: 0006
Revises: 0005
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

PLAIN_HTTP = 80
HTTPS = 443

servers = sa.table(
    "servers",
    sa.column("id", sa.Integer),
    sa.column("origin", sa.JSON),
    sa.column("egress", sa.JSON),
    sa.column("pending", sa.JSON),
)


def _https_only(egress: Any) -> dict[str, Any] | None:
    """``egress`` without port 80 (443 if nothing else was left), or None if it has no
    port 80 to lose."""
    if not isinstance(egress, dict):
        return None
    ports = egress.get("ports")
    if not isinstance(ports, list) or PLAIN_HTTP not in ports:
        return None
    kept = [p for p in ports if p != PLAIN_HTTP] or [HTTPS]
    return {**egress, "ports": kept}


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(servers.c.id, servers.c.origin, servers.c.egress, servers.c.pending)
    ).all()
    for server_id, origin, egress, pending in rows:
        if not isinstance(origin, dict):
            continue  # SQL NULL or JSON null: added by command, the operator chose
        values: dict[str, Any] = {}
        granted = _https_only(egress)
        if granted is not None:
            values["egress"] = granted
        if isinstance(pending, dict):
            staged = _https_only(pending.get("egress"))
            if staged is not None:
                values["pending"] = {**pending, "egress": staged}
        if values:
            bind.execute(servers.update().where(servers.c.id == server_id).values(**values))


def downgrade() -> None:
    # Nothing to undo: which rows held port 80 is not recorded, and giving plain HTTP
    # back to every registry server would reopen what this closed.
    pass
