"""The audit log: every state change writes an event in the same transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from setpoint._json import jsonable
from setpoint.store.db import Database
from setpoint.store.tables import events, utcnow

__all__ = ["ALERT_EVENT", "LABELS_SKIPPED_EVENT", "Event", "list_events", "record_event"]

# The kind of event an alert of `setpoint monitor` is stored as (the dashboard lists them).
ALERT_EVENT = "alert"
# Monitoring or the autopilot left out stored labels its model cannot be judged on; the
# payload has the ``source`` (monitor or autopilot), the model ``version``, the ``count``
# and the distinct ``reasons``.
LABELS_SKIPPED_EVENT = "labels_skipped"


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    project: str
    kind: str
    at: datetime
    payload: dict[str, Any]


def record_event(conn: Connection, *, project: str, kind: str, payload: dict[str, Any]) -> None:
    conn.execute(
        events.insert().values(project=project, kind=kind, at=utcnow(), payload=jsonable(payload))
    )


def list_events(
    db: Database, *, project: str, kind: str | None = None, limit: int = 100
) -> list[Event]:
    """The newest events first."""
    query = sa.select(events).where(events.c.project == project)
    if kind is not None:
        query = query.where(events.c.kind == kind)
    query = query.order_by(events.c.id.desc()).limit(limit)
    with db.read() as conn:
        return [Event(**row._mapping) for row in conn.execute(query)]
