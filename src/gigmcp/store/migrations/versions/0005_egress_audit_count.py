"""Egress audit rows that stand for many events: the sandbox resolver aggregates refused
and rate-limited queries into one row per instance, reason and interval.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("egress_audit") as batch:
        batch.add_column(sa.Column("count", sa.Integer, nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("egress_audit") as batch:
        batch.drop_column("count")
