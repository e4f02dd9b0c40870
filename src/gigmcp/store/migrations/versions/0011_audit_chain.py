"""The audit trails become hash chains: every row of audit_events and egress_audit gets
its place in its chain and the hashes that link it (set by the sealer), each chain's
head, and signed checkpoints.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

GENESIS = "0" * 64
TABLES = {"events": "audit_events", "egress": "egress_audit"}


def upgrade() -> None:
    for table in TABLES.values():
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("seq", sa.BigInteger, nullable=True))
            batch.add_column(sa.Column("prev_hash", sa.String(64), nullable=True))
            batch.add_column(sa.Column("row_hash", sa.String(64), nullable=True))
            batch.create_unique_constraint(f"uq_{table}_seq", ["seq"])
        op.create_index(
            f"ix_{table}_unsealed", table, ["id"],
            sqlite_where=sa.text("seq IS NULL"), postgresql_where=sa.text("seq IS NULL"),
        )  # fmt: skip
    heads = op.create_table(
        "audit_chain_heads",
        sa.Column("stream", sa.String(16), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("row_hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(heads, [{"stream": s, "seq": 0, "row_hash": GENESIS} for s in TABLES])
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("stream", sa.String(16), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("row_hash", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("public_key", sa.String(64), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.UniqueConstraint("stream", "seq"),
    )


def downgrade() -> None:
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_chain_heads")
    for table in TABLES.values():
        op.drop_index(f"ix_{table}_unsealed", table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"uq_{table}_seq", type_="unique")
            batch.drop_column("row_hash")
            batch.drop_column("prev_hash")
            batch.drop_column("seq")
