"""Connected accounts: administrators' OAuth apps per vendor, users' connections to them,
authorizations in flight, and the sealed OAuth material (client secrets, access and
refresh tokens, PKCE verifiers) as vault ciphertexts in a table of their own.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _fk(name: str, table: str, index: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        name, sa.Integer, sa.ForeignKey(f"{table}.id", ondelete="CASCADE"),
        nullable=False, index=index,
    )  # fmt: skip


def upgrade() -> None:
    op.create_table(
        "oauth_apps",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("vendor", sa.String(64), nullable=False, unique=True),
        sa.Column("display_name", sa.String(255), nullable=False),
        sa.Column("issuer", sa.String(2048)),
        sa.Column("authorization_endpoint", sa.String(2048), nullable=False),
        sa.Column("token_endpoint", sa.String(2048), nullable=False),
        sa.Column("revocation_endpoint", sa.String(2048)),
        sa.Column("client_id", sa.String(512), nullable=False),
        sa.Column("auth_method", sa.String(32), nullable=False),
        sa.Column("pkce", sa.Boolean, nullable=False),
        sa.Column("resource", sa.String(2048)),
        sa.Column("default_scopes", sa.JSON, nullable=False),
        sa.Column("extra_params", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "oauth_connections",
        sa.Column("id", sa.Integer, primary_key=True),
        _fk("user_id", "users"),
        _fk("app_id", "oauth_apps"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("scopes_requested", sa.JSON, nullable=False),
        sa.Column("scopes_granted", sa.JSON, nullable=False),
        sa.Column("expires_at", TS),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("lease_until", TS),
        sa.Column("lease_holder", sa.String(32)),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("retry_at", TS),
        sa.Column("problem", sa.String(512)),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("refreshed_at", TS),
        sa.UniqueConstraint("user_id", "app_id"),
    )
    op.create_table(
        "oauth_pending",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("state_hash", sa.String(64), nullable=False, unique=True),
        _fk("user_id", "users"),
        _fk("app_id", "oauth_apps", index=False),
        sa.Column("session_hash", sa.String(64), nullable=False),
        sa.Column("scopes", sa.JSON, nullable=False),
        sa.Column("return_to", sa.String(512), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "oauth_secrets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("record_id", sa.String(32), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ref_id", sa.Integer, nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False, index=True),
        sa.Column("ciphertext", sa.LargeBinary, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("kind", "ref_id"),
    )


def downgrade() -> None:
    for table in ("oauth_secrets", "oauth_pending", "oauth_connections", "oauth_apps"):
        op.drop_table(table)
