"""Alias kinds: every alias change says what moved it, instead of a reason prefix.

Rows written before this revision are back-filled from what the code of 0001-0004
wrote: ``Project.rollback`` and the autopilot gave ``champion`` back with a reason
starting ``rollback:``, the server's canary guard removed ``canary`` with one
starting ``canary rollback:``, and a version that did not pass the gate became
``challenger`` with one starting ``gate not passed:``. Reasons are kept as they were.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Frozen copy of the table and of the kinds at this revision (registry.aliases.AliasKind):
# later edits to either must not change what this migration wrote.
history = sa.table(
    "alias_history",
    sa.column("alias", sa.String),
    sa.column("version", sa.Integer),
    sa.column("reason", sa.Text),
    sa.column("kind", sa.String),
)
ROLLBACK = "rollback:"


def _starts(prefix: str) -> sa.ColumnElement[bool]:
    # Not LIKE: SQLite's LIKE ignores case and '_' is a wildcard; the old code compared
    # with str.startswith.
    return sa.func.substr(history.c.reason, 1, len(prefix)) == prefix


def upgrade() -> None:
    op.add_column("alias_history", sa.Column("kind", sa.String(32), nullable=True))
    alias, removed = history.c.alias, history.c.version.is_(None)
    kind = sa.case(
        (sa.and_(alias == "champion", ~removed, _starts(ROLLBACK)), "rollback"),
        (sa.and_(alias == "canary", removed, _starts("canary rollback:")), "canary_pulled"),
        (removed, "clear"),
        (alias == "champion", "promote"),
        (sa.and_(alias == "challenger", _starts("gate not passed:")), "challenger"),
        (alias == "shadow", "shadow"),
        (alias == "canary", "canary"),
        else_="set",
    )
    op.execute(history.update().values(kind=kind))
    with op.batch_alter_table("alias_history") as batch:
        batch.alter_column("kind", existing_type=sa.String(32), nullable=False)


def downgrade() -> None:
    # The code of 0004 knows a rollback only by its reason: give it the prefix back.
    op.execute(
        history.update()
        .where(history.c.kind == "rollback", ~_starts(ROLLBACK))
        .values(reason=ROLLBACK + " " + history.c.reason)
    )
    with op.batch_alter_table("alias_history") as batch:
        batch.drop_column("kind")
