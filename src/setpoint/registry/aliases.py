"""Aliases (``champion``, ``challenger``, ...) and the history of who held them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from setpoint.errors import InvalidParameterError, NotFoundError
from setpoint.registry.events import record_event
from setpoint.store.db import Database
from setpoint.store.tables import alias_history, aliases, model_versions, utcnow

__all__ = [
    "AliasChange",
    "alias_history_of",
    "get_alias",
    "get_alias_in",
    "list_aliases",
    "set_alias",
]


@dataclass(frozen=True, slots=True)
class AliasChange:
    alias: str
    version: int | None
    previous_version: int | None
    reason: str
    actor: str
    at: datetime


def set_alias(
    conn: Connection,
    *,
    project: str,
    alias: str,
    version: int | None,
    reason: str,
    actor: str,
) -> AliasChange:
    """Point ``alias`` at ``version`` (None removes it), inside the caller's transaction."""
    if not alias.isidentifier():
        raise InvalidParameterError(
            owner="set_alias", parameter="alias", expected="an identifier", got=alias
        )
    if version is not None:
        exists = conn.execute(
            sa.select(model_versions.c.version).where(
                model_versions.c.project == project, model_versions.c.version == version
            )
        ).first()
        if exists is None:
            raise NotFoundError(kind="model version", name=f"{project}@{version}")
    where = (aliases.c.project == project) & (aliases.c.alias == alias)
    previous = conn.execute(sa.select(aliases.c.version).where(where)).scalar()
    now = utcnow()
    conn.execute(aliases.delete().where(where))
    if version is not None:
        conn.execute(
            aliases.insert().values(project=project, alias=alias, version=version, updated_at=now)
        )
    change = AliasChange(alias, version, previous, reason, actor, now)
    conn.execute(
        alias_history.insert().values(
            project=project,
            alias=alias,
            version=version,
            previous_version=previous,
            reason=reason,
            actor=actor,
            at=now,
        )
    )
    record_event(
        conn,
        project=project,
        kind="alias_set",
        payload={"alias": alias, "version": version, "previous": previous, "reason": reason},
    )
    return change


def get_alias(db: Database, *, project: str, alias: str) -> int | None:
    with db.read() as conn:
        return get_alias_in(conn, project=project, alias=alias)


def get_alias_in(conn: Connection, *, project: str, alias: str) -> int | None:
    """``get_alias`` inside the caller's transaction (to check before a change)."""
    version: int | None = conn.execute(
        sa.select(aliases.c.version).where(aliases.c.project == project, aliases.c.alias == alias)
    ).scalar()
    return version


def list_aliases(db: Database, *, project: str) -> dict[str, int]:
    with db.read() as conn:
        rows = conn.execute(
            sa.select(aliases.c.alias, aliases.c.version).where(aliases.c.project == project)
        ).all()
    return {row.alias: row.version for row in rows}


def alias_history_of(db: Database, *, project: str, alias: str | None = None) -> list[AliasChange]:
    """Oldest first."""
    query = sa.select(alias_history).where(alias_history.c.project == project)
    if alias is not None:
        query = query.where(alias_history.c.alias == alias)
    with db.read() as conn:
        rows = conn.execute(query.order_by(alias_history.c.id)).all()
    return [
        AliasChange(r.alias, r.version, r.previous_version, r.reason, r.actor, r.at) for r in rows
    ]
