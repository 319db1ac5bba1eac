"""The metadata schema, as SQLAlchemy Core tables.

Nothing here assumes that a model is a tabular predictor: a model version is a
``kind`` plus a manifest of content-addressed artifacts and JSON documents, so
a later retrieval index plus generator fits the same rows.

Alembic migrations in ``store/migrations`` create these tables; a test checks
that the migrated database matches this module.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect

__all__ = [
    "UTCDateTime",
    "alias_history",
    "aliases",
    "api_keys",
    "datasets",
    "events",
    "feedback",
    "gate_decisions",
    "jobs",
    "metadata",
    "model_versions",
    "monitor_windows",
    "predictions",
    "projects",
    "quarantine",
    "schemas",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive text)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


JSONDoc: sa.types.TypeEngine[Any] = sa.JSON().with_variant(JSONB(), "postgresql")
# SQLite autoincrements only an ``INTEGER PRIMARY KEY`` (the rowid), never a BIGINT one
BigId: sa.types.TypeEngine[int] = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData()

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("spec", JSONDoc, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

schemas = sa.Table(
    "schemas",
    metadata,
    sa.Column("project", sa.String(64), sa.ForeignKey("projects.name"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("schema", JSONDoc, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(64), sa.ForeignKey("projects.name"), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("artifact", sa.String(64), nullable=False),
    sa.Column("schema_version", sa.Integer, nullable=False),
    sa.Column("n_rows", sa.Integer, nullable=False),
    sa.Column("n_quarantined", sa.Integer, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("report", JSONDoc, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("project", "name", "version", name="uq_datasets_version"),
    sa.UniqueConstraint("project", "name", "content_hash", name="uq_datasets_content"),
)

quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(64), sa.ForeignKey("projects.name"), nullable=False),
    sa.Column("dataset", sa.String(128), nullable=False),
    sa.Column("batch_hash", sa.String(64), nullable=False),
    sa.Column("row_number", sa.Integer, nullable=False),
    sa.Column("reasons", JSONDoc, nullable=False),
    sa.Column("row", JSONDoc, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_quarantine_project_dataset", "project", "dataset"),
)

model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("project", sa.String(64), sa.ForeignKey("projects.name"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("artifacts", JSONDoc, nullable=False),
    sa.Column("lineage", JSONDoc, nullable=False),
    sa.Column("metrics", JSONDoc, nullable=False),
    sa.Column("params", JSONDoc, nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

aliases = sa.Table(
    "aliases",
    metadata,
    sa.Column("project", sa.String(64), sa.ForeignKey("projects.name"), primary_key=True),
    sa.Column("alias", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

alias_history = sa.Table(
    "alias_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(64), sa.ForeignKey("projects.name"), nullable=False),
    sa.Column("alias", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=True),
    sa.Column("previous_version", sa.Integer, nullable=True),
    # What moved it: a value of registry.aliases.AliasKind (promote, rollback, ...).
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index("ix_alias_history_project", "project", "alias"),
)

gate_decisions = sa.Table(
    "gate_decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(64), sa.ForeignKey("projects.name"), nullable=False),
    sa.Column("challenger", sa.Integer, nullable=False),
    sa.Column("champion", sa.Integer, nullable=True),
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("metric", sa.String(64), nullable=False),
    sa.Column("details", JSONDoc, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("payload", JSONDoc, nullable=False),
    sa.Index("ix_events_project_at", "project", "at"),
)

# True outcomes posted after the prediction. ``key`` is what makes a retry a no-op:
# ``req:<request_id>:<index>`` or ``ent:<entity_id>``. No foreign key to ``projects``: like
# ``events`` and ``predictions``, these rows are written on the serving path.
feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(64), nullable=False),
    sa.Column("key", sa.String(260), nullable=False),
    sa.Column("request_id", sa.String(64), nullable=True),
    sa.Column("idx", sa.Integer, nullable=True),
    sa.Column("entity_id", sa.String(256), nullable=True),
    sa.Column("label", JSONDoc, nullable=False),
    sa.Column("event_time", UTCDateTime, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("project", "key", name="uq_feedback_key"),
    sa.Index("ix_feedback_project_time", "project", "event_time"),
)

# API keys of the whole store (not of one project), kept only as the sha256 of the key.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    # admin: every keyed endpoint; feedback: POST /v1/feedback only (registry.api_keys)
    sa.Column("scope", sa.String(16), nullable=False, server_default="admin"),
    sa.UniqueConstraint("name", name="uq_api_keys_name"),
    sa.UniqueConstraint("key_hash", name="uq_api_keys_hash"),
)

# The prediction log of a PostgreSQL store (an embedded store logs to files instead);
# the table exists on both backends so that there is one schema.
predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(64), nullable=False),
    sa.Column("request_id", sa.Text, nullable=False),
    sa.Column("idx", sa.Integer, nullable=False),
    sa.Column("entity_id", sa.Text, nullable=True),
    sa.Column("time", UTCDateTime, nullable=False),
    sa.Column("model_version", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("inputs", JSONDoc, nullable=False),
    sa.Column("output", JSONDoc, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("client_request_id", sa.Text, nullable=True),  # the client's X-Request-ID
    sa.Index("ix_predictions_project_time", "project", "time"),
    sa.Index("ix_predictions_project_request", "project", "request_id"),
)

# One row per monitored window of served traffic, so that a later run can skip a window
# whose ``fingerprint`` is unchanged and the server can show the latest one. Derived data
# (recomputable from the prediction log), so like ``events`` no foreign key; ``result`` is
# JSON text, not a JSON column, because it is only ever read back whole.
monitor_windows = sa.Table(
    "monitor_windows",
    metadata,
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
    sa.Index("ix_monitor_windows_project_end", "project", "window_end"),
)

# The durable job queue of registry/jobs.py: a job is claimed under a lease that expires
# unless its owner heartbeats, so a killed worker's job is taken again. ``stage`` and
# ``state`` are what a retried job resumes from. No foreign key, like ``events``: a queue
# row must not need the project row first.
jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("key", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("stage", sa.String(32), nullable=True),
    sa.Column("payload", JSONDoc, nullable=False),
    sa.Column("state", JSONDoc, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("owner", sa.String(128), nullable=True),
    sa.Column("lease_expires", UTCDateTime, nullable=True),
    sa.Column("not_before", UTCDateTime, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("project", "key", name="uq_jobs_key"),
    sa.Index("ix_jobs_project_status", "project", "status"),
)
