"""OAuth apps name the vendor's API hosts: a connected account's token is injected only
toward hosts that are both the credential's and the app's, so a server that names a
vendor cannot have that vendor's token sent to a host of its own choosing.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("oauth_apps") as batch:
        batch.add_column(sa.Column("api_hosts", sa.JSON, nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("oauth_apps") as batch:
        batch.drop_column("api_hosts")
