"""Which columns a model learns from, and the feature tables joined to the events.

``feature_columns`` reads the stored schema (what each column holds) and the
spec (which columns are the target, time and entity, which are excluded).
``join_feature_tables`` gives each event the spec's ``joins``: every feature
table joined point-in-time, so a row only ever sees values that existed at its
own time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from setpoint.config.spec import ProjectSpec
from setpoint.data.asof import asof_join
from setpoint.data.schema import Schema, check_feature_types, check_spec_columns
from setpoint.data.sources import read_source
from setpoint.errors import SchemaError

__all__ = ["feature_columns", "join_feature_tables"]


def join_feature_tables(events: Any, spec: ProjectSpec, *, root: Path) -> pd.DataFrame:
    """``events`` (a frame or source) with each of ``spec.joins`` joined as of its time."""
    frame = read_source(events)
    for i, join in enumerate(spec.joins):
        features = read_source(spec.sources[join.source], name=join.source, root=root)
        keep = join.columns or [c for c in features.columns if c not in join.by]
        missing = [c for c in [*join.by, join.feature_time, *keep] if c not in features]
        if missing:
            raise SchemaError(
                f"joins[{i}]: the feature table {join.source!r} has no column(s) {missing}.",
                column=missing[0],
            )
        event_time = join.event_time or str(spec.timestamp)
        if event_time not in frame:
            raise SchemaError(
                f"joins[{i}]: the events have no time column {event_time!r}.",
                column=event_time,
            )
        selected = features[list(dict.fromkeys([*join.by, join.feature_time, *keep]))]
        frame = asof_join(
            frame.assign(**{event_time: _as_datetime(frame[event_time], event_time)}),
            selected.assign(
                **{join.feature_time: _as_datetime(selected[join.feature_time], join.source)}
            ),
            by=join.by,
            event_time=event_time,
            feature_time=join.feature_time,
            tolerance=None if join.tolerance_delta is None else pd.Timedelta(join.tolerance_delta),
        )
        if join.feature_time not in keep:
            frame = frame.drop(columns=[join.feature_time], errors="ignore")
    return frame


def feature_columns(
    spec: ProjectSpec, schema: Schema
) -> tuple[list[str], list[str], dict[str, str]]:
    """Numeric and categorical feature columns, and why each other column is left out.

    The stored schema says what each column holds; the spec, perhaps edited
    since the schema was inferred, says which columns are the target,
    timestamp and entity and which are excluded. Booleans train as 0/1.
    """
    check_spec_columns(spec, schema.names, where=f"schema v{schema.version} of the stored data")
    check_feature_types(spec, schema)
    if spec.timestamp is not None and schema.column(spec.timestamp).kind != "datetime":
        kind = schema.column(spec.timestamp).kind
        raise SchemaError(
            f"The spec's timestamp {spec.timestamp!r} is a {kind} column in schema "
            f"v{schema.version}, not date-times. Ingest with --new-schema to re-infer it, or "
            "change 'timestamp'.",
            column=spec.timestamp,
            key="timestamp",
        )
    roles = {spec.target, spec.timestamp, spec.entity}
    excluded = {name for name, feature in spec.features.items() if feature.exclude}
    numeric: list[str] = []
    categorical: list[str] = []
    unused: dict[str, str] = {}
    for column in schema.columns:
        if column.name in roles:
            continue
        if column.name in excluded:
            unused[column.name] = "excluded in the spec"
        elif column.kind in ("numeric", "boolean"):
            numeric.append(column.name)
        elif column.kind == "categorical":
            categorical.append(column.name)
        else:
            unused[column.name] = f"{column.kind} columns are not trained on"
    if not numeric and not categorical:
        why = "; ".join(f"{name!r}: {reason}" for name, reason in unused.items()) or "none"
        raise SchemaError(
            f"No column to train on: every column is the target, timestamp or entity, or is "
            f"left out ({why}). Declare a kind with features.<column>.type: numeric (or "
            "categorical) in the spec; it applies to a new schema (setpoint data ingest "
            "--new-schema), and batches stored before keep the kinds they were validated with.",
            column=None,
        )
    return numeric, categorical, unused


def _as_datetime(values: pd.Series, where: str) -> pd.Series:
    """Times as UTC datetimes; text must be ISO 8601."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return values
    try:
        return pd.to_datetime(values, utc=True, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise SchemaError(
            f"{where}: column {values.name!r} is not ISO 8601 times: {exc}", column=str(values.name)
        ) from None
