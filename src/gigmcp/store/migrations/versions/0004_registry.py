"""Registry installs: where a server came from and what was consented, an upgrade
awaiting consent, the tool pins that catch rug pulls, and the registry index last
accepted (for rollback refusal).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("servers") as batch:
        batch.add_column(sa.Column("origin", sa.JSON, nullable=True))
        batch.add_column(sa.Column("consented_runtime_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("pending", sa.JSON, nullable=True))
    op.create_table(
        "tool_pins",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "server_id",
            sa.Integer,
            sa.ForeignKey("servers.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("tool", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("snapshot", sa.JSON, nullable=False),
        sa.Column("flagged_fingerprint", sa.String(64), nullable=True),
        sa.Column("flagged_snapshot", sa.JSON, nullable=True),
        sa.Column("pinned_at", TS, nullable=False),
        sa.Column("flagged_at", TS, nullable=True),
        sa.UniqueConstraint("server_id", "tool"),
    )
    op.create_table(
        "registry_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("generated", sa.String(64), nullable=False),
        sa.Column("index_sha256", sa.String(64), nullable=False),
        sa.Column("accepted_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("registry_state")
    op.drop_table("tool_pins")
    with op.batch_alter_table("servers") as batch:
        batch.drop_column("pending")
        batch.drop_column("consented_runtime_hash")
        batch.drop_column("origin")
