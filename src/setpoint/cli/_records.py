"""Records to send: read from a file or JSON text, or planned from a held-back Parquet file."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import typer

from setpoint.errors import SchemaError, SourceError

__all__ = ["ReplayPlan", "frame_records", "parse_json_records", "read_records", "replay_plan"]

# The quickstart's columns, used when the folder has no setpoint.yaml to name them.
_TIMESTAMP, _TARGET = "scheduled_at", "late"
_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")


def parse_json_records(text: str) -> list[dict[str, Any]]:
    """The records of ``--json``: one JSON object or a list of them."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint="'--json'") from None
    records = _as_records(data)
    if isinstance(records, str):
        raise typer.BadParameter(records, param_hint="'--json'")
    return records


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of a .json, .jsonl, .csv or .parquet file."""
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise typer.BadParameter(
            f"expected a file ending in {', '.join(_SUFFIXES)}; got {path.name!r}",
            param_hint="'--file'",
        )
    if not path.is_file():
        raise SourceError("no such file", source=str(path))
    try:
        if suffix == ".csv":
            return frame_records(pd.read_csv(path))
        if suffix == ".parquet":
            return frame_records(pd.read_parquet(path))
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:
        raise SourceError(f"cannot be read: {exc}", source=str(path)) from None
    if suffix == ".jsonl":
        records: list[dict[str, Any]] = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                item = _json(line, where=f"{path}:{number}")
                if not isinstance(item, dict):
                    raise SourceError(f"line {number} is not a JSON object", source=str(path))
                records.append(item)
        data: Any = records
    else:
        data = _json(text, where=str(path))
    found = _as_records(data)
    if isinstance(found, str):
        raise SourceError(found, source=str(path))
    return found


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: times as ISO 8601 strings, NaN and NaT as None."""
    frame = frame.copy()
    frame.columns = [str(name) for name in frame.columns]
    for name in frame.columns:
        if pd.api.types.is_datetime64_any_dtype(frame[name]):
            frame[name] = [None if pd.isna(t) else t.isoformat() for t in frame[name]]
    cells = frame.astype(object).where(frame.notna(), None)
    return [dict(zip(frame.columns, row, strict=True)) for row in cells.itertuples(index=False)]


@dataclass(frozen=True)
class ReplayPlan:
    """Records in time order, their times and true outcomes (None: no target column)."""

    records: list[dict[str, Any]]
    times: list[datetime]
    labels: list[Any] | None
    first: str
    last: str
    notes: list[str] = field(default_factory=list)


def replay_plan(
    path: Path,
    *,
    spec_dir: Path,
    start: datetime | None,
    end: datetime | None,
    limit: int | None,
) -> ReplayPlan:
    """The rows of ``path`` with a time in [start, end), oldest first, at most ``limit``."""
    timestamp, target = _columns(spec_dir)
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise SourceError(f"is not a readable Parquet file: {exc}", source=str(path)) from None
    if timestamp not in frame.columns:
        raise SchemaError(
            f"{path} has no {timestamp!r} column to replay in time order; "
            f"its columns are {', '.join(map(str, frame.columns))}",
            column=timestamp,
        )
    times = pd.to_datetime(frame[timestamp], utc=True)
    keep = times.notna()
    if start is not None:
        keep &= times >= pd.Timestamp(start)
    if end is not None:
        keep &= times < pd.Timestamp(end)
    if not keep.any():
        span = (
            f"{times.min().isoformat()} to {times.max().isoformat()}"
            if times.notna().any()
            else "no times at all"
        )
        raise typer.BadParameter(
            f"no records of {path} have {timestamp} in [{_iso(start) or 'the start'}, "
            f"{_iso(end) or 'the end'}); the file runs from {span}",
            param_hint="'--from' / '--to'",
        )
    order = times[keep].sort_values(kind="stable").index[:limit]
    frame, times = frame.loc[order].reset_index(drop=True), times[order].reset_index(drop=True)
    notes: list[str] = []
    labels: list[Any] | None = None
    if target in frame.columns:
        labels = _labels(frame[target])
        frame = frame.drop(columns=[target])
    else:
        notes.append(f"{path} has no {target!r} column: no feedback will be posted.")
    return ReplayPlan(
        records=frame_records(frame),
        times=[t.to_pydatetime() for t in times],
        labels=labels,
        first=times.iloc[0].isoformat(),
        last=times.iloc[-1].isoformat(),
        notes=notes,
    )


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def _columns(spec_dir: Path) -> tuple[str, str]:
    from setpoint.config.loader import SPEC_FILE, load_spec

    if not (spec_dir / SPEC_FILE).is_file():
        return _TIMESTAMP, _TARGET
    spec = load_spec(spec_dir)
    if spec.timestamp is None:
        raise SchemaError(
            f"{spec_dir / SPEC_FILE} names no 'timestamp' column: replay needs one to send "
            "records in time order",
            column=None,
        )
    return spec.timestamp, spec.target


def _labels(column: pd.Series) -> list[Any]:
    """True outcomes as JSON values; a 0/1 column is a binary target, sent as booleans."""
    values = column.dropna()
    binary = pd.api.types.is_bool_dtype(column) or (
        pd.api.types.is_integer_dtype(column) and set(values.unique()) <= {0, 1}
    )
    out: list[Any] = column.astype(object).where(column.notna(), None).tolist()
    return [None if v is None else bool(v) if binary else v for v in out]


def _json(text: str, *, where: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SourceError(f"not valid JSON: {exc}", source=where) from None


def _as_records(data: Any) -> list[dict[str, Any]] | str:
    """The records in ``data``, or what is wrong with it."""
    if isinstance(data, dict) and isinstance(data.get("records"), list):
        data = data["records"]
    if isinstance(data, dict):
        return [data]
    if not isinstance(data, list) or not data:
        got = "an empty list" if data == [] else f"a {type(data).__name__}"
        return f"expected a JSON object or a non-empty list of objects; got {got}"
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            return f"expected a list of JSON objects; item {i} is a {type(item).__name__}"
    return data
