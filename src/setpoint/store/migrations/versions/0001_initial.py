"""Initial metadata schema.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from setpoint.store.tables import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copy of the types at this revision: later edits to tables.py must not
# change what this migration created.
JSON = sa.JSON().with_variant(JSONB(), "postgresql")
PROJECT = "projects.name"


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "schemas",
        sa.Column("project", sa.String(64), sa.ForeignKey(PROJECT), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("schema", JSON, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(64), sa.ForeignKey(PROJECT), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("artifact", sa.String(64), nullable=False),
        sa.Column("schema_version", sa.Integer, nullable=False),
        sa.Column("n_rows", sa.Integer, nullable=False),
        sa.Column("n_quarantined", sa.Integer, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("report", JSON, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("project", "name", "version", name="uq_datasets_version"),
        sa.UniqueConstraint("project", "name", "content_hash", name="uq_datasets_content"),
    )
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(64), sa.ForeignKey(PROJECT), nullable=False),
        sa.Column("dataset", sa.String(128), nullable=False),
        sa.Column("batch_hash", sa.String(64), nullable=False),
        sa.Column("row_number", sa.Integer, nullable=False),
        sa.Column("reasons", JSON, nullable=False),
        sa.Column("row", JSON, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_quarantine_project_dataset", "quarantine", ["project", "dataset"])
    op.create_table(
        "model_versions",
        sa.Column("project", sa.String(64), sa.ForeignKey(PROJECT), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("artifacts", JSON, nullable=False),
        sa.Column("lineage", JSON, nullable=False),
        sa.Column("metrics", JSON, nullable=False),
        sa.Column("params", JSON, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "aliases",
        sa.Column("project", sa.String(64), sa.ForeignKey(PROJECT), primary_key=True),
        sa.Column("alias", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "alias_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(64), sa.ForeignKey(PROJECT), nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("previous_version", sa.Integer, nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_alias_history_project", "alias_history", ["project", "alias"])
    op.create_table(
        "gate_decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(64), sa.ForeignKey(PROJECT), nullable=False),
        sa.Column("challenger", sa.Integer, nullable=False),
        sa.Column("champion", sa.Integer, nullable=True),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("details", JSON, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("payload", JSON, nullable=False),
    )
    op.create_index("ix_events_project_at", "events", ["project", "at"])


def downgrade() -> None:
    for table in (
        "events",
        "gate_decisions",
        "alias_history",
        "aliases",
        "model_versions",
        "quarantine",
        "datasets",
        "schemas",
        "projects",
    ):
        op.drop_table(table)
