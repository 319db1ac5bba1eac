"""Monitor a project's served traffic, window by window, against its model's reference.

For each window: how many predictions and from which model versions; drift of
every feature and of the prediction against the reference stored with the model
(``reference.json``, built from its held-out rows), weighted by the model's
feature importances; the project's metric realized on the rows whose labels
arrived; and, for a binary model, the same metric estimated from the scores
alone (CBPE) with the estimate's error once labels are in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from setpoint._json import jsonable
from setpoint.errors import ConfigError, InvalidParameterError, NotFoundError
from setpoint.monitor.cbpe import (
    CBPE_METRICS,
    Estimate,
    EstimationError,
    estimate_performance,
    estimation_error,
)
from setpoint.monitor.drift import DriftReport, detect_drift
from setpoint.monitor.performance import PerformanceResult, realized_performance
from setpoint.project import LABEL_COLUMN, PREDICTION_COLUMN
from setpoint.registry import aliases as alias_ops
from setpoint.registry.feedback import list_feedback
from setpoint.spec.model import Task
from setpoint.watch.reference import ModelReference, load_reference
from setpoint.watch.windows import (
    Traffic,
    Window,
    cut_windows,
    join_feedback,
    load_traffic,
    parse_window,
)

if TYPE_CHECKING:
    from setpoint.project import Project
    from setpoint.train.model import TabularModel

__all__ = ["MonitorResult", "WindowResult", "monitor_project", "on_event_clock"]

_N_BOOT = 300  # bootstrap draws of the realized metric's interval: enough for 2 digits
_N_DRAWS = 200  # CBPE draws, as estimate_performance's default


@dataclass(frozen=True)
class WindowResult:
    """One window: its traffic, drift, realized and estimated metric."""

    start: datetime
    end: datetime
    n: int
    versions: tuple[str, ...]
    n_labelled: int
    drift: DriftReport
    realized: PerformanceResult | None
    estimate: Estimate | None
    error: EstimationError | None

    def top_drifted(self, count: int = 3) -> tuple[str, ...]:
        """The drifted features that weigh most in the model, most important first."""
        drifted = [f for f in self.drift.features if f.drifted]
        drifted.sort(key=lambda f: (-f.weight, -f.psi, f.name))
        return tuple(f.name for f in drifted[:count])

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "n": self.n,
            "versions": list(self.versions),
            "n_labelled": self.n_labelled,
            "drifted_features": list(self.top_drifted(len(self.drift.features))),
            "drift": self.drift.to_dict(),
            "realized": None if self.realized is None else self.realized.to_dict(),
            "estimate": None if self.estimate is None else self.estimate.to_dict(),
            "error": None if self.error is None else self.error.to_dict(),
        }


@dataclass(frozen=True)
class MonitorResult:
    """Every window of ``project``'s served traffic, against model ``version``."""

    project: str
    version: int
    task: str
    metric: str
    window: str
    windows: tuple[WindowResult, ...]
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        payload: dict[str, Any] = jsonable(
            {
                "project": self.project,
                "version": self.version,
                "task": self.task,
                "metric": self.metric,
                "window": self.window,
                "warnings": list(self.warnings),
                "windows": [w.to_dict() for w in self.windows],
            }
        )
        return payload


def _utc(value: datetime | None, parameter: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidParameterError(
            owner="monitor_project", parameter=parameter, expected="a datetime", got=value
        )
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _current(traffic: Traffic, rows: Window, ref: ModelReference) -> pd.DataFrame:
    """The window as the reference's columns: features, score and predicted class."""
    inputs = traffic.inputs.iloc[rows.positions]
    meta = traffic.meta.iloc[rows.positions]
    columns: dict[str, Any] = {}
    for name in ref.reference.features:
        values = inputs[name] if name in inputs else pd.Series(None, index=inputs.index)
        if ref.reference.columns[name].kind == "numeric":
            values = pd.to_numeric(values, errors="coerce")
        columns[name] = values.to_numpy()
    score = meta["score"] if meta["score"].notna().any() else meta["value"]
    if ref.reference.prediction is not None:
        columns[PREDICTION_COLUMN] = score.to_numpy(dtype=np.float64)
    if ref.reference.label is not None and ref.threshold is not None:
        columns[LABEL_COLUMN] = (score.to_numpy() >= ref.threshold).astype(int)
    return pd.DataFrame(columns)


def _performance(
    meta: pd.DataFrame, model: TabularModel, ref: ModelReference, metric: str
) -> tuple[int, PerformanceResult | None, Estimate | None, EstimationError | None]:
    binary = model.task is Task.BINARY
    scores = meta["score" if binary else "value"].to_numpy(dtype=np.float64)
    known = meta["label"].notna().to_numpy()
    estimate = None
    if binary and ref.threshold is not None and metric in CBPE_METRICS:
        estimate = estimate_performance(
            scores,
            threshold=ref.threshold,
            metrics=[metric],
            calibration=ref.calibration,
            n_draws=_N_DRAWS,
        )
    if model.task is Task.MULTICLASS or not known.any() or np.isnan(scores).any():
        return int(known.sum()), None, estimate, None
    labels = np.full(len(meta), np.nan)
    labels[known] = model.encode_labels(meta["label"].to_numpy()[known])
    realized = realized_performance(
        labels,
        scores,
        task=model.task,
        metrics=[metric],
        threshold=ref.threshold,
        n_boot=_N_BOOT,
    )
    error = None
    if estimate is not None and ref.threshold is not None:
        # The band is for the rows that have labels: estimate exactly those.
        same_rows = estimate
        if not known.all():
            same_rows = estimate_performance(
                scores[known],
                threshold=ref.threshold,
                metrics=[metric],
                calibration=ref.calibration,
                n_draws=_N_DRAWS,
            )
        error = estimation_error(same_rows, realized)
    return int(known.sum()), realized, estimate, error


def monitor_project(
    project: Project,
    *,
    window: str,
    since: datetime | None = None,
    until: datetime | None = None,
    version: int | None = None,
    clock: Literal["event", "served"] = "event",
) -> MonitorResult:
    """Monitor the served traffic with ``since <= time < until``, cut into ``window``s.

    ``version`` None compares every served prediction with the champion's
    reference; a version compares only the predictions it made with its own.
    ``clock="event"`` places each prediction at its record's own time (the
    spec's ``timestamp`` field, when requests carry it), so a replayed or
    backfilled period is judged week by week as it happened; ``"served"`` (and
    records without the field) use the time the server answered.
    """
    spec = parse_window(window)
    start, stop = _utc(since, "since"), _utc(until, "until")
    only_version = version is not None
    if version is None:
        version = alias_ops.get_alias(project.store.db, project=project.name, alias="champion")
        if version is None:
            raise NotFoundError(
                kind="alias", name="champion", hint="Train and promote a model first."
            )
    ref = load_reference(project, version)
    model = project.load_model(version)
    traffic = load_traffic(project.store, project=project.name)
    if clock == "event" and project.spec.timestamp is not None:
        traffic = on_event_clock(traffic, project.spec.timestamp)
    meta = traffic.meta
    keep = np.ones(len(meta), dtype=bool)
    if start is not None:
        keep &= (meta["time"] >= pd.Timestamp(start)).to_numpy()
    if stop is not None:
        keep &= (meta["time"] < pd.Timestamp(stop)).to_numpy()
    warnings: list[str] = []
    if only_version:
        keep &= (meta["model_version"] == str(version)).to_numpy()
    if not keep.any():
        raise ConfigError(
            f"No served predictions of project {project.name!r} fall in "
            f"[{start.isoformat() if start else 'the first'}, "
            f"{stop.isoformat() if stop else 'the last'}) for model @{version}; "
            f"{len(meta)} are logged from {meta['time'].iloc[0].isoformat()} "
            f"to {meta['time'].iloc[-1].isoformat()}.",
            since=start,
            until=stop,
        )
    traffic = Traffic(
        meta=meta[keep].reset_index(drop=True),
        inputs=traffic.inputs[keep].reset_index(drop=True),
    )
    traffic = join_feedback(traffic, list_feedback(project.store.db, project=project.name))
    importances = model.feature_importance()
    if ref.calibration is not None and not ref.calibration.calibrated:
        warnings.append(
            f"model @{version} was not calibrated enough on its reference rows "
            f"({ref.calibration.reason}): estimated metrics may be off"
        )
    results: list[WindowResult] = []
    for rows in cut_windows(traffic.meta["time"], spec):
        window_meta = traffic.meta.iloc[rows.positions]
        drift = detect_drift(
            ref.reference,
            _current(traffic, rows, ref),
            importances=importances,
            share_threshold=project.spec.monitoring.max_drift_share,
        )
        labelled, realized, estimate, error = _performance(
            window_meta, model, ref, project.spec.metric
        )
        results.append(
            WindowResult(
                start=rows.start,
                end=rows.end,
                n=len(rows.positions),
                versions=tuple(sorted(set(window_meta["model_version"]), key=_version_key)),
                n_labelled=labelled,
                drift=drift,
                realized=realized,
                estimate=estimate,
                error=error,
            )
        )
    return MonitorResult(
        project=project.name,
        version=version,
        task=model.task.value,
        metric=project.spec.metric,
        window=spec.text,
        windows=tuple(results),
        warnings=tuple(warnings),
    )


def _version_key(text: str) -> tuple[int, str]:
    return (int(text), "") if text.isdigit() else (2**31, text)


def on_event_clock(traffic: Traffic, column: str) -> Traffic:
    """``traffic`` timed and ordered by each record's ``column``, where it has a valid one."""
    if column not in traffic.inputs:
        return traffic
    event = pd.to_datetime(traffic.inputs[column], utc=True, errors="coerce", format="ISO8601")
    meta = traffic.meta.copy()
    meta["served_at"] = meta["time"]
    known = event.notna().to_numpy()
    meta.loc[known, "time"] = event[known].dt.as_unit("us").to_numpy()
    order = np.argsort(meta["time"].to_numpy(), kind="stable")
    return Traffic(
        meta=meta.iloc[order].reset_index(drop=True),
        inputs=traffic.inputs.iloc[order].reset_index(drop=True),
    )
