"""Model versions: a kind, a manifest of verified artifacts, lineage and metrics.

Registering writes the artifacts first (content-addressed, each atomic) and
then every row in one transaction, so a process killed at any instant leaves
either no new version or a complete one; at worst an orphan blob remains, which
``setpoint gc`` removes. A registration that fails removes its own new files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from setpoint._json import jsonable
from setpoint.errors import ArtifactIntegrityError, NotFoundError
from setpoint.registry.events import record_event
from setpoint.registry.projects import lock_project
from setpoint.registry.sweep import writing_blobs
from setpoint.store.tables import model_versions, utcnow
from setpoint.store.workspace import Store

__all__ = ["ModelVersion", "get_version", "list_versions", "load_artifacts", "register_model"]


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One registered version. ``metrics`` is the JSON training stored:
    ``{"slices": {"train": {name: value}, "valid": ..., "test": ...}, "segments": ...}``;
    read it through ``slices`` and ``test_metric``."""

    project: str
    version: int
    kind: str
    artifacts: dict[str, str]
    lineage: dict[str, Any]
    metrics: dict[str, Any]
    params: dict[str, Any]
    description: str
    created_at: datetime

    @property
    def slices(self) -> dict[str, dict[str, float | None]]:
        """The metrics of each slice (``train``, ``valid``, ``test``) by name.

        A value that is not a number (a metric undefined on the slice, stored as
        null) is None; a slice that is not an object is left out, so that a version
        stored in another shape still reads.
        """
        found = self.metrics.get("slices")
        if not isinstance(found, dict):
            return {}
        return {
            str(name): {str(metric): _number(value) for metric, value in values.items()}
            for name, values in found.items()
            if isinstance(values, dict)
        }

    def test_metric(self, name: str) -> float | None:
        """Metric ``name`` on the held-out test slice, or None when it was not measured."""
        return self.slices.get("test", {}).get(name)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def register_model(
    store: Store,
    *,
    project: str,
    kind: str,
    files: Mapping[str, bytes],
    lineage: Mapping[str, Any],
    metrics: Mapping[str, Any],
    params: Mapping[str, Any],
    description: str = "",
) -> ModelVersion:
    """Store ``files`` and record a new version of ``project``'s model.

    When it fails (a full disk, a read-only database), the files it wrote that no
    other version or batch references are removed again.
    """
    with writing_blobs(store) as blobs:
        manifest = {name: blobs.put(data) for name, data in sorted(files.items())}
        with store.db.write() as conn:
            lock_project(conn, project)
            blobs.ensure_stored()
            return _insert_version(
                conn,
                project=project,
                kind=kind,
                manifest=manifest,
                lineage=lineage,
                metrics=metrics,
                params=params,
                description=description,
            )


def _insert_version(
    conn: Connection,
    *,
    project: str,
    kind: str,
    manifest: dict[str, str],
    lineage: Mapping[str, Any],
    metrics: Mapping[str, Any],
    params: Mapping[str, Any],
    description: str,
) -> ModelVersion:
    latest = conn.execute(
        sa.select(sa.func.max(model_versions.c.version)).where(model_versions.c.project == project)
    ).scalar()
    row = {
        "project": project,
        "version": (latest or 0) + 1,
        "kind": kind,
        "artifacts": manifest,
        "lineage": jsonable(lineage),
        "metrics": jsonable(metrics),
        "params": jsonable(params),
        "description": description,
        "created_at": utcnow(),
    }
    conn.execute(model_versions.insert().values(**row))
    record_event(
        conn,
        project=project,
        kind="model_registered",
        payload={"version": row["version"], "kind": kind, "artifacts": manifest},
    )
    return ModelVersion(**row)


def get_version(store: Store, *, project: str, version: int) -> ModelVersion:
    with store.db.read() as conn:
        row = conn.execute(
            sa.select(model_versions).where(
                model_versions.c.project == project, model_versions.c.version == version
            )
        ).first()
    if row is None:
        raise NotFoundError(
            kind="model version", name=f"{project}@{version}", hint="See 'setpoint model list'."
        )
    return ModelVersion(**row._mapping)


def list_versions(store: Store, *, project: str) -> list[ModelVersion]:
    with store.db.read() as conn:
        rows = conn.execute(
            sa.select(model_versions)
            .where(model_versions.c.project == project)
            .order_by(model_versions.c.version)
        ).all()
    return [ModelVersion(**row._mapping) for row in rows]


def load_artifacts(store: Store, version: ModelVersion) -> dict[str, bytes]:
    """Every artifact of ``version``, each checked against its sha256 first."""
    files: dict[str, bytes] = {}
    for name, sha in version.artifacts.items():
        try:
            files[name] = store.artifacts.get_bytes(sha)
        except ArtifactIntegrityError as exc:
            # the store's message names the file's path; the reader needs the model too
            raise ArtifactIntegrityError(
                f"Model {version.project}@{version.version}, file {name!r}: {exc}", sha256=sha
            ) from None
    return files
