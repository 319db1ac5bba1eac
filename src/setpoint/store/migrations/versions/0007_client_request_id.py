"""Predictions keep the client's X-Request-ID apart from the request id the server gives.

The server names every request itself, so that a client that reuses its id (each
retry does) cannot make feedback by request id ambiguous; the client's id is kept
for tracing. Rows written before this revision have none.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("predictions", sa.Column("client_request_id", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("client_request_id")
