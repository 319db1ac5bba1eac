"""Quarantined rows: listed with their reasons and exported for repair."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from setpoint.errors import ConfigError, InvalidParameterError
from setpoint.store.tables import quarantine
from setpoint.store.workspace import Store

__all__ = ["export_quarantine", "list_quarantine", "quarantine_counts"]


def list_quarantine(
    store: Store, *, project: str, dataset: str | None = None, limit: int | None = None
) -> pd.DataFrame:
    """One row per quarantined row: where it came from, why, and its values."""
    query = sa.select(quarantine).where(quarantine.c.project == project)
    if dataset is not None:
        query = query.where(quarantine.c.dataset == dataset)
    query = query.order_by(quarantine.c.id)
    if limit is not None:
        query = query.limit(limit)
    with store.db.read() as conn:
        rows = conn.execute(query).all()
    records = [
        {
            "dataset": r.dataset,
            "batch": r.batch_hash[:12],
            "row_number": r.row_number,
            "reasons": "; ".join(_reason_text(reason) for reason in r.reasons),
            **{f"value.{k}": v for k, v in r.row.items()},
        }
        for r in rows
    ]
    return pd.DataFrame.from_records(records)


def quarantine_counts(store: Store, *, project: str) -> dict[str, int]:
    """How many rows each reason kind sent to quarantine."""
    with store.db.read() as conn:
        reasons = conn.execute(
            sa.select(quarantine.c.reasons).where(quarantine.c.project == project)
        ).scalars()
        counts: dict[str, int] = {}
        for row_reasons in reasons:
            for reason in row_reasons:
                kind = str(reason.get("kind", "unknown"))
                counts[kind] = counts.get(kind, 0) + 1
    return counts


def export_quarantine(store: Store, path: Path, *, project: str, dataset: str | None = None) -> int:
    """Write the quarantine to CSV or Parquet (by suffix); return the row count."""
    frame = list_quarantine(store, project=project, dataset=dataset)
    suffix = path.suffix.lower()
    if suffix not in {".csv", ".parquet"}:
        raise InvalidParameterError(
            owner="export_quarantine",
            parameter="path",
            expected="a .csv or .parquet file name",
            got=str(path),
        )
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; give a file name to export to.", path=str(path))
    temp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".csv":
            frame.to_csv(temp, index=False)
        else:
            frame.to_parquet(temp, index=False)
        temp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)  # no half-written file left behind
        raise ConfigError(f"Cannot write {path}: {exc.strerror or exc}.", path=str(path)) from None
    return len(frame)


def _reason_text(reason: dict[str, object]) -> str:
    column = f" {reason['column']}" if reason.get("column") else ""
    detail = f": {reason['detail']}" if reason.get("detail") else ""
    return f"{reason.get('kind')}{column}{detail}"
