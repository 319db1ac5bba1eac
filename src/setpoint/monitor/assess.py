"""The one assessment of a window of served traffic against a model's reference.

``assess_window`` is what every reader of a window calls: ``setpoint monitor``
(and through the windows it stores, the dashboard and ``/metrics``), the live
autopilot's look and the flights replay. For one window it gives:

- drift of every feature and of the prediction against the reference stored
  with the model, weighted by the model's feature importances;
- the project's metric realized on the rows whose labels arrived, with its
  bootstrap interval, overall and per value of each segment column;
- for a binary model, the metric estimated from the scores alone (CBPE), and
  the estimate's error once labels are in;
- on request, a domain classifier's verdict on the window's joint drift.

The score column is the log's ``score`` (binary) or ``value`` (regression); a
window whose scores are not all finite gets neither an estimate nor a realized
metric (CBPE and the bootstrap need a number per row).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from setpoint.config.spec import Task
from setpoint.kinds.protocol import LABEL_COLUMN, PREDICTION_COLUMN, MonitoringReference
from setpoint.monitor.results import SEGMENT_ABSENT, WindowResult
from setpoint.monitor.windows import Window
from setpoint.registry.feedback import LabelRule
from setpoint.stats.cbpe import (
    CBPE_METRICS,
    Estimate,
    EstimationError,
    estimate_performance,
    estimation_error,
)
from setpoint.stats.drift import detect_drift
from setpoint.stats.multivariate import MultivariateDriftResult, domain_classifier_drift
from setpoint.stats.performance import PerformanceResult, SegmentPerformance, realized_performance
from setpoint.traffic.frames import LABEL_SKIPPED, Traffic

if TYPE_CHECKING:
    from setpoint.train.tabular_model import TabularModel

__all__ = ["WindowOptions", "assess_window", "domain_frame", "score_column"]

# Rows a side for the domain classifier: 18 fits of 50 trees on at most 10,000
# rows, about a second a window on two threads, however large the window.
_MULTIVARIATE_ROWS = 5_000
# Its leaves need 50 rows (min_data_in_leaf); with fewer rows a side, out of
# three folds, it can hardly split and would only ever say "no drift".
_MULTIVARIATE_MIN_ROWS = 150
# Distinct reasons a window keeps for its skipped labels: enough to say what is wrong.
_REASONS_SHOWN = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowOptions:
    """How a window is assessed; every caller builds it from the spec (``from_spec``)."""

    metric: str
    max_drift_share: float
    segments: tuple[str, ...] = ()
    min_segment_rows: int = 200
    n_boot: int = 300  # bootstrap draws of the realized metric's interval: 2 digits
    n_draws: int = 200  # CBPE draws, as estimate_performance's default

    @classmethod
    def from_spec(cls, spec: Any, *, segments: bool = True) -> WindowOptions:
        """The options of ``spec`` (a ``ProjectSpec``); ``segments=False`` leaves them out."""
        return cls(
            metric=spec.metric,
            max_drift_share=spec.monitoring.max_drift_share,
            segments=tuple(dict.fromkeys(spec.segments)) if segments else (),
            min_segment_rows=spec.gate.min_segment_rows,
        )


def score_column(meta: pd.DataFrame) -> pd.Series:
    """The logged score of each row: ``score`` for a binary model, else ``value``."""
    return meta["score"] if meta["score"].notna().any() else meta["value"]


def _current(inputs: pd.DataFrame, meta: pd.DataFrame, ref: MonitoringReference) -> pd.DataFrame:
    """The window as the reference's columns: features, score and predicted class."""
    columns: dict[str, Any] = {}
    for name in ref.reference.features:
        values = inputs[name] if name in inputs else pd.Series(None, index=inputs.index)
        if ref.reference.columns[name].kind == "numeric":
            values = pd.to_numeric(values, errors="coerce")
        columns[name] = values.to_numpy()
    score = score_column(meta)
    if ref.reference.prediction is not None:
        columns[PREDICTION_COLUMN] = score.to_numpy(dtype=np.float64)
    if ref.reference.label is not None and ref.threshold is not None:
        columns[LABEL_COLUMN] = (score.to_numpy() >= ref.threshold).astype(int)
    return pd.DataFrame(columns)


def _segment_values(inputs: pd.DataFrame, columns: Sequence[str]) -> dict[str, pd.Series]:
    """The window's value of each segment column present in its inputs."""
    found: dict[str, pd.Series] = {}
    for name in columns:
        if name not in inputs or not inputs[name].notna().any():
            continue
        values = inputs[name]
        # A JSON list or object cannot be a group key; its text can.
        if values.map(lambda v: isinstance(v, list | dict)).any():
            values = values.map(lambda v: v if v is None else str(v))
        found[name] = values
    return found


@dataclass(frozen=True, slots=True)
class _Skipped:
    count: int
    reasons: tuple[str, ...]


def _usable_labels(meta: pd.DataFrame, model: TabularModel) -> tuple[pd.DataFrame, _Skipped]:
    """``meta`` without the labels ``model`` cannot be judged on, and how many those were.

    The join leaves them out when it is given the model's rule (``label_skipped``
    says why); labels joined without one (a replay's) are judged here the same
    way, so one bad row is counted rather than failing the whole assessment.
    """
    if LABEL_SKIPPED in meta:  # joined with the model's rule: every label left is usable
        reasons = [str(r) for r in meta[LABEL_SKIPPED].dropna().tolist()]
        shown = tuple(sorted(set(reasons)))[:_REASONS_SHOWN]
        return meta, _Skipped(count=len(reasons), reasons=shown)
    rule = LabelRule.of(model)
    reasons = []
    bad = np.zeros(len(meta), dtype=bool)
    seen: dict[tuple[type, Any], tuple[str, str] | None] = {}  # a window has few distinct labels
    for i, label in enumerate(meta["label"].tolist()):
        if pd.api.types.is_scalar(label) and pd.isna(label):
            continue
        try:
            why = seen[(type(label), label)]
        except KeyError:
            why = seen[(type(label), label)] = rule.problem(label)
        except TypeError:  # a list or object, written to the store by hand
            why = rule.problem(label)
        if why is not None:
            bad[i] = True
            reasons.append(why[1])
    if bad.any():
        meta = meta.copy()
        meta.loc[bad, "label"] = None
    shown = tuple(sorted(set(reasons)))[:_REASONS_SHOWN]
    return meta, _Skipped(count=len(reasons), reasons=shown)


def _performance(
    meta: pd.DataFrame,
    model: TabularModel,
    ref: MonitoringReference,
    options: WindowOptions,
    *,
    segments: Mapping[str, pd.Series],
) -> tuple[int, PerformanceResult | None, Estimate | None, EstimationError | None]:
    binary = model.task is Task.BINARY
    metric = options.metric
    scores = meta["score" if binary else "value"].to_numpy(dtype=np.float64)
    known = meta["label"].notna().to_numpy()
    if not np.isfinite(scores).all():
        return int(known.sum()), None, None, None
    estimate = None
    if binary and ref.threshold is not None and metric in CBPE_METRICS:
        estimate = estimate_performance(
            scores,
            threshold=ref.threshold,
            metrics=[metric],
            calibration=ref.calibration,
            n_draws=options.n_draws,
        )
    if model.task is Task.MULTICLASS or not known.any():
        return int(known.sum()), None, estimate, None
    labels = np.full(len(meta), np.nan)
    labels[known] = model.encode_labels(meta["label"].to_numpy()[known])
    realized = realized_performance(
        labels,
        scores,
        task=model.task,
        metrics=[metric],
        threshold=ref.threshold,
        segments={name: values.to_numpy(dtype=object) for name, values in segments.items()},
        min_segment_rows=options.min_segment_rows,
        n_boot=options.n_boot,
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
                n_draws=options.n_draws,
            )
        error = estimation_error(same_rows, realized)
    return int(known.sum()), realized, estimate, error


def domain_frame(frame: pd.DataFrame, ref: MonitoringReference) -> pd.DataFrame:
    """The model's features typed alike on both sides of the domain classifier.

    Numbers as floats (a logged 3 and a stored 3.0 are one value); categories as
    text, as the log holds JSON and the dataset may hold numbers or booleans.
    """
    columns: dict[str, Any] = {}
    for name in ref.reference.features:
        values = frame[name] if name in frame else pd.Series(None, index=frame.index, dtype=object)
        if ref.reference.columns[name].kind == "numeric":
            numbers = pd.to_numeric(values.astype(object), errors="coerce")
            columns[name] = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            columns[name] = values.astype(object).map(_text).to_numpy(dtype=object)
    return pd.DataFrame(columns)


def _text(value: Any) -> str | None:
    return None if pd.api.types.is_scalar(value) and pd.isna(value) else str(value)


def _multivariate(
    reference: pd.DataFrame, current: pd.DataFrame, ref: MonitoringReference, *, threads: int
) -> tuple[MultivariateDriftResult | None, str | None]:
    smaller = min(len(reference), len(current))
    if smaller < _MULTIVARIATE_MIN_ROWS:
        side = "reference" if len(reference) < len(current) else "window"
        return None, (
            f"the {side} has {smaller} rows, fewer than the {_MULTIVARIATE_MIN_ROWS} "
            "a domain classifier needs"
        )
    result = domain_classifier_drift(
        reference,
        domain_frame(current, ref),
        max_rows=_MULTIVARIATE_ROWS,
        num_threads=threads,
        seed=0,
    )
    return result, None


def _version_key(text: str) -> tuple[int, str]:
    return (int(text), "") if text.isdigit() else (2**31, text)


def assess_window(
    traffic: Traffic,
    window: Window,
    *,
    model: TabularModel,
    ref: MonitoringReference,
    options: WindowOptions,
    reference_rows: pd.DataFrame | None = None,
    multivariate_skipped: str | None = None,
    threads: int = 1,
) -> WindowResult:
    """Rows ``window.positions`` of ``traffic`` judged against ``model`` and its ``ref``.

    ``traffic.meta`` carries the labels known when the window is judged (see
    ``traffic.frames.join_feedback``); a label ``model`` cannot be judged on is
    not used but counted in ``labels_skipped``, with its reason. ``reference_rows``
    (the model's held-out rows, as ``domain_frame`` types them) adds the domain
    classifier's verdict; without them, ``multivariate_skipped`` says why there is none.
    """
    meta = traffic.meta.iloc[window.positions]
    inputs = traffic.inputs.iloc[window.positions]
    current = _current(inputs, meta, ref)
    drift = detect_drift(
        ref.reference,
        current,
        importances=model.feature_importance(),
        share_threshold=options.max_drift_share,
    )
    by_segment = _segment_values(inputs, options.segments)
    meta, skipped = _usable_labels(meta, model)
    labelled, realized, estimate, error = _performance(
        meta, model, ref, options, segments=by_segment
    )
    segments = [] if realized is None else list(realized.segments)
    segments += [
        SegmentPerformance(name, None, labelled, None, {}, skipped=SEGMENT_ABSENT)
        for name in options.segments
        if name not in by_segment
    ]
    verdict, unavailable = None, multivariate_skipped
    if reference_rows is not None:
        verdict, unavailable = _multivariate(reference_rows, current, ref, threads=threads)
    return WindowResult(
        start=window.start,
        end=window.end,
        n=len(window.positions),
        versions=tuple(sorted(set(meta["model_version"]), key=_version_key)),
        n_labelled=labelled,
        drift=drift,
        realized=realized,
        estimate=estimate,
        error=error,
        segments=tuple(segments),
        multivariate=verdict,
        multivariate_skipped=unavailable,
        labels_skipped=skipped.count,
        labels_skipped_reasons=skipped.reasons,
    )
