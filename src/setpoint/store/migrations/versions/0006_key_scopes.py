"""Key scopes: an API key may be for feedback only, or for everything (admin).

Every key made before this revision could call the admin endpoints, so each one
becomes an ``admin`` key and keeps working as it did.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("scope", sa.String(16), nullable=False, server_default="admin"))


def downgrade() -> None:
    # The code of 0005 knows no scopes: every key it sees can call the admin endpoints,
    # so a feedback key goes with its scope rather than gain that power.
    op.execute(sa.text("DELETE FROM api_keys WHERE scope <> 'admin'"))
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("scope")
