"""Monitoring: the result of each monitored window of served traffic.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from setpoint.store.tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitor_windows",
        sa.Column("project", sa.String(64), primary_key=True),
        sa.Column("model_version", sa.Integer, primary_key=True),
        sa.Column("window", sa.String(32), primary_key=True),
        sa.Column("clock", sa.String(16), primary_key=True),
        sa.Column("window_start", UTCDateTime, primary_key=True),
        sa.Column("window_end", UTCDateTime, nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("n_labelled", sa.Integer, nullable=False),
        sa.Column("fingerprint", sa.String(128), nullable=False),
        sa.Column("result", sa.Text, nullable=False),
        sa.Column("computed_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_monitor_windows_project_end", "monitor_windows", ["project", "window_end"])


def downgrade() -> None:
    op.drop_table("monitor_windows")
