"""Serving: feedback, API keys and the prediction log of a PostgreSQL store.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from setpoint.store.tables import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Frozen copy of the types at this revision: later edits to tables.py must not
# change what this migration created.
JSON = sa.JSON().with_variant(JSONB(), "postgresql")
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("key", sa.String(260), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("idx", sa.Integer, nullable=True),
        sa.Column("entity_id", sa.String(256), nullable=True),
        sa.Column("label", JSON, nullable=False),
        sa.Column("event_time", UTCDateTime, nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("project", "key", name="uq_feedback_key"),
    )
    op.create_index("ix_feedback_project_time", "feedback", ["project", "event_time"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("revoked_at", UTCDateTime, nullable=True),
        sa.UniqueConstraint("name", name="uq_api_keys_name"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_hash"),
    )
    op.create_table(
        "predictions",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("entity_id", sa.Text, nullable=True),
        sa.Column("time", UTCDateTime, nullable=False),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("inputs", JSON, nullable=False),
        sa.Column("output", JSON, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
    )
    op.create_index("ix_predictions_project_time", "predictions", ["project", "time"])
    op.create_index("ix_predictions_project_request", "predictions", ["project", "request_id"])


def downgrade() -> None:
    for table in ("predictions", "api_keys", "feedback"):
        op.drop_table(table)
