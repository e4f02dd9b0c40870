"""The overview's roll-up counters (tool calls and errors per day, per week and server,
per month, server and tool; egress requests per day and decision), filled from the rows
already written; and the audit table's indexes for its filtered pages, each ending in
(at, id), replacing single-column ones that the composite indexes now lead with.

The fill counts exactly what store/activity.py counts as rows are written (a test checks
the two agree); it is SQL per database because the day, the week from Monday and the
month are computed differently by each.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

AUDIT_INDEXES = {
    "ix_audit_events_profile_at_id": ["profile_id", "at", "id"],
    "ix_audit_events_server_at_id": ["server", "at", "id"],
    "ix_audit_events_user_server_at_id": ["user_id", "server", "at", "id"],
    "ix_audit_events_action_at_id": ["action", "at", "id"],
}
# Each is the first column of a composite index above (or of 0007's).
SINGLE = {"ix_audit_events_at": "at", "ix_audit_events_user_id": "user_id"}
SINGLE_PROFILE = ("ix_audit_events_profile_id", "profile_id")


def _periods(dialect: str) -> tuple[str, str, str]:
    if dialect == "postgresql":
        utc = "(at AT TIME ZONE 'UTC')"
        return (
            f"CAST({utc} AS DATE)",
            f"CAST(date_trunc('week', {utc}) AS DATE)",
            f"CAST(date_trunc('month', {utc}) AS DATE)",
        )
    # SQLite keeps UTC times as text; 'weekday 0' moves to the coming Sunday (or stays on
    # one), six days back from it is that week's Monday.
    return "date(at)", "date(at, 'weekday 0', '-6 days')", "date(at, 'start of month')"


def _fill() -> None:
    # Every piece of these statements is a constant of this file: nothing comes from data.
    bind = op.get_bind()
    day, week, month = _periods(bind.dialect.name)
    failed = "SUM(CASE WHEN outcome <> 'ok' THEN 1 ELSE 0 END)"
    grains = (  # grain, period, the columns split by, the rows that have them
        ("d", day, (), ""),
        ("w", week, ("server",), "AND server IS NOT NULL"),
        ("m", month, ("server", "tool"), "AND server IS NOT NULL AND tool IS NOT NULL"),
    )
    # scope: 0 counts everyone's rows; a user's id counts the rows they acted in.
    for scope, owner in (("0", "0"), ("user_id", "owner_id")):
        only = "" if scope == "0" else f"AND {scope} IS NOT NULL"
        by = [] if scope == "0" else [scope]  # a constant in GROUP BY is a position
        for grain, start, split, where in grains:
            server, tool = ([*split, "''", "''"])[:2]
            group = ", ".join([*by, start, *split])
            statement = (
                "INSERT INTO call_counts (scope, grain, start, server, tool, calls, errors) "  # noqa: S608
                f"SELECT {scope}, '{grain}', {start}, {server}, {tool}, COUNT(*), {failed} "
                f"FROM audit_events WHERE action = 'tools/call' {where} {only} "
                f"GROUP BY {group}"
            )
            bind.execute(sa.text(statement))
        only = "" if owner == "0" else f"WHERE {owner} IS NOT NULL"
        group = ", ".join([*([] if owner == "0" else [owner]), day, "decision"])
        statement = (
            "INSERT INTO egress_counts (scope, day, decision, requests) "  # noqa: S608
            f"SELECT {owner}, {day}, decision, SUM(count) FROM egress_audit {only} "
            f"GROUP BY {group}"
        )
        bind.execute(sa.text(statement))


def upgrade() -> None:
    op.create_table(
        "call_counts",
        sa.Column("scope", sa.Integer, primary_key=True),
        sa.Column("grain", sa.String(1), primary_key=True),
        sa.Column("start", sa.Date, primary_key=True),
        sa.Column("server", sa.String(63), primary_key=True),
        sa.Column("tool", sa.String(255), primary_key=True),
        sa.Column("calls", sa.Integer, nullable=False),
        sa.Column("errors", sa.Integer, nullable=False),
    )
    op.create_table(
        "egress_counts",
        sa.Column("scope", sa.Integer, primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("decision", sa.String(16), primary_key=True),
        sa.Column("requests", sa.Integer, nullable=False),
    )
    _fill()
    for name, columns in AUDIT_INDEXES.items():
        op.create_index(name, "audit_events", columns)
    for name in (*SINGLE, SINGLE_PROFILE[0]):
        op.drop_index(name, "audit_events")


def downgrade() -> None:
    for name, column in (*SINGLE.items(), SINGLE_PROFILE):
        op.create_index(name, "audit_events", [column])
    for name in AUDIT_INDEXES:
        op.drop_index(name, "audit_events")
    op.drop_table("egress_counts")
    op.drop_table("call_counts")
