"""The control plane's people: users' names and sign-in times, browser sessions, personal
API tokens and one-time sign-in links, each kind of secret in a table of its own and
stored only as a hash; audit rows name the real user behind an impersonation.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _user(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        name,
        sa.Integer,
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        nullable=nullable,
        index=True,
    )


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("name", sa.String(255)))
        batch.add_column(sa.Column("last_sign_in_at", TS))
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("real_user_id", sa.Integer))
    op.create_index("ix_audit_events_at_id", "audit_events", ["at", "id"])
    op.create_index("ix_audit_events_user_at_id", "audit_events", ["user_id", "at", "id"])
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        _user("user_id"),
        sa.Column("csrf_hash", sa.String(64), nullable=False),
        # Impersonation: the user this session views the gateway as, until when.
        _user("as_user_id", nullable=True),
        sa.Column("as_until", TS),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("revoked_at", TS),
        sa.Column("client", sa.String(255)),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("display", sa.String(32), nullable=False),
        _user("user_id"),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS),
        sa.Column("revoked_at", TS),
        sa.Column("last_used_at", TS),
    )
    op.create_table(
        "login_links",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        _user("user_id"),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS),
    )


def downgrade() -> None:
    op.drop_table("login_links")
    op.drop_table("api_tokens")
    op.drop_table("web_sessions")
    op.drop_index("ix_audit_events_user_at_id", "audit_events")
    op.drop_index("ix_audit_events_at_id", "audit_events")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("real_user_id")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("last_sign_in_at")
        batch.drop_column("name")
