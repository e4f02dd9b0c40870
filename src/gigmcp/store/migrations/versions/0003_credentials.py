"""Credentials and egress: definitions and allowlist per server, values as vault
ciphertext, and the egress proxy's audit log.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("servers") as batch:
        batch.add_column(sa.Column("egress", sa.JSON, nullable=False, server_default="{}"))
        batch.add_column(sa.Column("credentials", sa.JSON, nullable=False, server_default="[]"))
    op.create_table(
        "credential_values",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("record_id", sa.String(32), nullable=False, unique=True),
        sa.Column(
            "owner_id",
            sa.Integer,
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column(
            "server_id",
            sa.Integer,
            sa.ForeignKey("servers.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("credential_id", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False, index=True),
        sa.Column("ciphertext", sa.LargeBinary, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("owner_id", "server_id", "credential_id"),
    )

    op.create_table(
        "vault_items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("key_id", sa.String(16), nullable=False, index=True),
        sa.Column("ciphertext", sa.LargeBinary, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "egress_audit",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", TS, nullable=False, index=True),
        sa.Column("owner_id", sa.Integer, index=True),
        sa.Column("profile_id", sa.Integer),
        sa.Column("server", sa.String(63)),
        sa.Column("instance", sa.String(128)),
        sa.Column("source_ip", sa.String(45), nullable=False),
        sa.Column("method", sa.String(16)),
        sa.Column("scheme", sa.String(8)),
        sa.Column("host", sa.String(255)),
        sa.Column("port", sa.Integer),
        sa.Column("path", sa.String(1024)),
        sa.Column("status", sa.Integer),
        sa.Column("bytes_out", sa.Integer, nullable=False),
        sa.Column("bytes_in", sa.Integer, nullable=False),
        sa.Column("duration_ms", sa.Float),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("credential", sa.String(64)),
    )


def downgrade() -> None:
    op.drop_table("egress_audit")
    op.drop_table("vault_items")
    op.drop_table("credential_values")
    with op.batch_alter_table("servers") as batch:
        batch.drop_column("credentials")
        batch.drop_column("egress")
