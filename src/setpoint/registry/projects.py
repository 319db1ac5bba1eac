"""Projects: one row each, holding the spec in force."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from setpoint.config.spec import ProjectSpec
from setpoint.errors import NotFoundError
from setpoint.store.db import Database
from setpoint.store.tables import projects, utcnow

__all__ = ["ensure_project", "list_projects", "lock_project", "upsert_project"]


def upsert_project(conn: Connection, spec: ProjectSpec) -> None:
    """Create the project row, or update its spec."""
    document = spec.model_dump(mode="json")
    now = utcnow()
    updated = conn.execute(
        projects.update()
        .where(projects.c.name == spec.project)
        .values(spec=document, updated_at=now)
    )
    if updated.rowcount == 0:
        conn.execute(
            projects.insert().values(
                name=spec.project, spec=document, created_at=now, updated_at=now
            )
        )


def ensure_project(conn: Connection, spec: ProjectSpec) -> None:
    """Create the project row if there is none; leave an existing one as it is.

    For writes that change no state, such as recording a refusal, so that bad
    input leaves the project exactly as it was.
    """
    exists = conn.execute(sa.select(projects.c.name).where(projects.c.name == spec.project)).first()
    if exists is None:
        upsert_project(conn, spec)


def lock_project(conn: Connection, project: str) -> None:
    """Serialize writers of one project (PostgreSQL row lock; SQLite's write lock is global)."""
    row = conn.execute(
        sa.select(projects.c.name).where(projects.c.name == project).with_for_update()
    ).first()
    if row is None:
        raise NotFoundError(kind="project", name=project, hint="Ingest a dataset first.")


def list_projects(db: Database) -> list[str]:
    with db.read() as conn:
        return list(conn.execute(sa.select(projects.c.name).order_by(projects.c.name)).scalars())
