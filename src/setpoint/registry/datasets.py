"""Datasets: validated batches, versioned by content, stored as Parquet.

A dataset is a sequence of batches; version N is batches 1..N together. The
first batch of a project infers the schema; every later batch is validated
against the newest schema. Bad rows go to the quarantine table with their
reasons, and a batch with too many bad rows is refused whole.

Ingesting writes the Parquet blob first, then the schema, the dataset row, the
quarantine rows and the event in one transaction; when that fails, the blob is
removed again unless another batch references it.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from setpoint._json import jsonable
from setpoint.config.spec import ProjectSpec, SourceSpec
from setpoint.data.schema import Schema, check_feature_types, infer_schema
from setpoint.data.sources import read_source
from setpoint.data.validate import ValidationReport, validate_batch
from setpoint.errors import ArtifactIntegrityError, BatchRefusedError, NotFoundError, SchemaError
from setpoint.registry.events import record_event
from setpoint.registry.projects import ensure_project, lock_project, upsert_project
from setpoint.registry.sweep import writing_blobs
from setpoint.store.tables import datasets, quarantine, schemas, utcnow
from setpoint.store.workspace import Store

__all__ = [
    "DatasetVersion",
    "IngestResult",
    "frame_hash",
    "get_schema",
    "ingest",
    "latest_schema",
    "list_datasets",
    "load_dataset",
]

Source: TypeAlias = SourceSpec | str | Path | pd.DataFrame | pa.Table


@dataclass(frozen=True, slots=True)
class DatasetVersion:
    project: str
    name: str
    version: int
    content_hash: str
    artifact: str
    schema_version: int
    n_rows: int
    n_quarantined: int
    source: str
    report: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class IngestResult:
    """The stored (or already stored) batch; ``notes`` are the new schema's, if one was inferred."""

    dataset: DatasetVersion
    created: bool
    report: ValidationReport | None
    notes: tuple[str, ...] = ()


def frame_hash(frame: pd.DataFrame) -> str:
    """A content hash of a frame: the same rows and columns give the same hash."""
    digest = hashlib.sha256()
    for name, dtype in frame.dtypes.items():
        digest.update(f"{name}\x1f{dtype}\x1e".encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def latest_schema(store: Store, *, project: str) -> Schema | None:
    with store.db.read() as conn:
        row = conn.execute(
            sa.select(schemas.c.schema, schemas.c.version)
            .where(schemas.c.project == project)
            .order_by(schemas.c.version.desc())
            .limit(1)
        ).first()
    return None if row is None else Schema.from_dict(row.schema)


def get_schema(store: Store, *, project: str, version: int) -> Schema:
    """Schema ``version`` of ``project``: the one a batch was validated against."""
    with store.db.read() as conn:
        row = conn.execute(
            sa.select(schemas.c.schema).where(
                schemas.c.project == project, schemas.c.version == version
            )
        ).first()
    if row is None:
        raise NotFoundError(kind="schema", name=f"{project} v{version}")
    return Schema.from_dict(row.schema)


def ingest(
    store: Store,
    spec: ProjectSpec,
    source: Source,
    *,
    name: str = "events",
    new_schema: bool = False,
    label: str | None = None,
) -> IngestResult:
    """Read, validate and store one batch of ``name``.

    Raises BatchRefusedError, with the report, when the bad share is over the
    spec's limit; nothing but an ``ingest_refused`` event is written then.
    """
    label = label or _describe(source)
    frame = read_source(source, name=label, text_columns=[spec.entity] if spec.entity else ())
    content = frame_hash(frame)
    existing = _find(store, project=spec.project, name=name, content_hash=content)
    if existing is not None:
        return IngestResult(dataset=existing, created=False, report=None)

    current = None if new_schema else latest_schema(store, project=spec.project)
    if current is not None:
        _check_roles(spec, current)
        check_feature_types(spec, current)
    schema = current or infer_schema(
        frame, spec=spec, version=_next_schema_version(store, spec), source=label
    )
    known = _known_ids(store, schema.entity, spec, name=name) if schema.entity else None
    report = validate_batch(frame, schema, policy=spec.validation, known_ids=known)
    if report.refused:
        with store.db.write() as conn:
            ensure_project(conn, spec)
            record_event(
                conn,
                project=spec.project,
                kind="ingest_refused",
                payload={"dataset": name, "source": label, "report": report.to_dict()},
            )
        raise BatchRefusedError(
            f"{label}: batch refused, nothing was stored. {report.summary()}", report=report
        )

    blob = _to_parquet(report.clean)
    with writing_blobs(store) as blobs:
        artifact = blobs.put(blob)
        now = utcnow()
        with store.db.write() as conn:
            upsert_project(conn, spec)
            lock_project(conn, spec.project)
            blobs.ensure_stored()
            if current is None:
                conn.execute(
                    schemas.insert().values(
                        project=spec.project,
                        version=schema.version,
                        schema=schema.to_dict(),
                        created_at=now,
                    )
                )
            latest = conn.execute(
                sa.select(sa.func.max(datasets.c.version)).where(
                    datasets.c.project == spec.project, datasets.c.name == name
                )
            ).scalar()
            row = {
                "project": spec.project,
                "name": name,
                "version": (latest or 0) + 1,
                "content_hash": content,
                "artifact": artifact,
                "schema_version": schema.version,
                "n_rows": len(report.clean),
                "n_quarantined": report.n_bad,
                "source": label,
                "report": jsonable(report.to_dict()),
                "created_at": now,
            }
            conn.execute(datasets.insert().values(**row))
            _quarantine(conn, spec.project, name, content, report, now)
            record_event(
                conn,
                project=spec.project,
                kind="dataset_ingested",
                payload={
                    k: row[k] for k in ("name", "version", "n_rows", "n_quarantined", "source")
                },
            )
    notes = schema.notes if current is None else ()
    return IngestResult(dataset=DatasetVersion(**row), created=True, report=report, notes=notes)


def list_datasets(store: Store, *, project: str, name: str | None = None) -> list[DatasetVersion]:
    query = sa.select(datasets).where(datasets.c.project == project)
    if name is not None:
        query = query.where(datasets.c.name == name)
    with store.db.read() as conn:
        rows = conn.execute(query.order_by(datasets.c.name, datasets.c.version)).all()
    return [DatasetVersion(**{k: v for k, v in r._mapping.items() if k != "id"}) for r in rows]


def load_dataset(
    store: Store,
    *,
    project: str,
    name: str = "events",
    version: int | None = None,
    columns: list[str] | None = None,
) -> tuple[pd.DataFrame, list[DatasetVersion]]:
    """Batches 1..version of a dataset as one frame, each blob verified first."""
    batches = list_datasets(store, project=project, name=name)
    if not batches:
        raise NotFoundError(
            kind="dataset", name=f"{project}/{name}", hint="Ingest it with 'setpoint data ingest'."
        )
    if version is not None:
        latest = batches[-1].version
        if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= latest:
            # Silently training on the newest version instead would be a lie.
            raise NotFoundError(
                kind="version of dataset",
                name=f"{project}/{name}@{version}",
                hint=f"It has versions 1 to {latest}; see 'setpoint data list'.",
            )
        batches = [b for b in batches if b.version <= version]
    tables = [
        pq.read_table(io.BytesIO(_batch_bytes(store, b, f"{project}/{name}")), columns=columns)
        for b in batches
    ]
    try:
        frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        raise _incompatible(tables, batches, f"{project}/{name}") from None
    return frame, batches


def _batch_bytes(store: Store, batch: DatasetVersion, dataset: str) -> bytes:
    try:
        return store.artifacts.get_bytes(batch.artifact)
    except ArtifactIntegrityError as exc:
        # the store's message names the file's path; the reader needs the batch too
        raise ArtifactIntegrityError(
            f"Dataset {dataset} v{batch.version} ({batch.source}): {exc}", sha256=batch.artifact
        ) from None


def _incompatible(
    tables: list[pa.Table], batches: list[DatasetVersion], dataset: str
) -> SchemaError:
    """Name the column whose type differs between batches (stored under different schemas)."""
    first: dict[str, tuple[pa.DataType, DatasetVersion]] = {}
    for table, batch in zip(tables, batches, strict=True):
        for field in table.schema:
            seen = first.setdefault(field.name, (field.type, batch))
            if not _mergeable(seen[0], field.type):
                before = seen[1]
                return SchemaError(
                    f"Dataset {dataset} cannot be read as one table: column {field.name!r} is "
                    f"{seen[0]} in v{before.version} (schema v{before.schema_version}) but "
                    f"{field.type} in v{batch.version} (schema v{batch.schema_version}). Train "
                    f"on a version before v{batch.version} (--version), or ingest the batches "
                    "again under one schema into a fresh store.",
                    column=field.name,
                    versions=[before.version, batch.version],
                )
    return SchemaError(f"Dataset {dataset}: its batches cannot be read as one table.")


def _mergeable(a: pa.DataType, b: pa.DataType) -> bool:
    if a == b or pa.types.is_null(a) or pa.types.is_null(b):
        return True
    numeric = (pa.types.is_integer, pa.types.is_floating)
    return any(t(a) for t in numeric) and any(t(b) for t in numeric)


def _describe(source: Source) -> str:
    if isinstance(source, SourceSpec):
        return source.path or "sql query"
    if isinstance(source, pd.DataFrame | pa.Table):
        return f"<{type(source).__name__} {source.shape[0]}x{source.shape[1]}>"
    return str(source)


def _find(store: Store, *, project: str, name: str, content_hash: str) -> DatasetVersion | None:
    with store.db.read() as conn:
        row = conn.execute(
            sa.select(datasets).where(
                datasets.c.project == project,
                datasets.c.name == name,
                datasets.c.content_hash == content_hash,
            )
        ).first()
    if row is None:
        return None
    return DatasetVersion(**{k: v for k, v in row._mapping.items() if k != "id"})


def _next_schema_version(store: Store, spec: ProjectSpec) -> int:
    with store.db.read() as conn:
        latest = conn.execute(
            sa.select(sa.func.max(schemas.c.version)).where(schemas.c.project == spec.project)
        ).scalar()
    return (latest or 0) + 1


def _check_roles(spec: ProjectSpec, schema: Schema) -> None:
    """Refuse to validate with a schema whose target, timestamp or entity the spec has changed."""
    for role in ("target", "timestamp", "entity"):
        wanted, stored = getattr(spec, role), getattr(schema, role)
        if wanted != stored:
            raise SchemaError(
                f"The spec's {role} is {wanted!r} but schema v{schema.version}, which batches are "
                f"validated against, has {role} {stored!r}. Ingest with --new-schema (Python: "
                "new_schema=True) to infer a new schema with the spec's roles, or undo the change.",
                column=wanted or stored,
                key=role,
            )


def _known_ids(store: Store, entity: str, spec: ProjectSpec, *, name: str) -> np.ndarray | None:
    # The stored schema's entity, which validation checks: a spec edited since
    # may name a column the stored batches do not have.
    if not list_datasets(store, project=spec.project, name=name):
        return None
    frame, _ = load_dataset(store, project=spec.project, name=name, columns=[entity])
    return frame[entity].to_numpy()


def _to_parquet(frame: pd.DataFrame) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink, compression="zstd")
    return sink.getvalue()


def _quarantine(
    conn: sa.Connection,
    project: str,
    name: str,
    batch: str,
    report: ValidationReport,
    now: datetime,
) -> None:
    if report.n_bad == 0:
        return
    rows = report.bad.to_dict(orient="records")
    conn.execute(
        quarantine.insert(),
        [
            {
                "project": project,
                "dataset": name,
                "batch_hash": batch,
                "row_number": int(row.pop("_row")),
                "reasons": [anomaly.to_dict() for anomaly in reasons],
                "row": jsonable(row),
                "created_at": now,
            }
            for row, reasons in zip(rows, report.reasons, strict=True)
        ],
    )
