"""Realized performance of a window once its labels have arrived.

Point values come from the project's metric kernels (``setpoint.train.metrics``)
and the confidence intervals from a percentile bootstrap over the labelled
rows, scored with the same vectorised kernels. Rows whose label is missing
(not arrived yet) are left out and counted.

A metric that the window cannot define is ``None`` with a ``reason``, never
NaN: an AUC on one class, a precision with no predicted positive.

>>> rng = np.random.default_rng(0)
>>> scores = rng.random(2000)
>>> labels = (rng.random(2000) < scores).astype(float)
>>> labels[:100] = np.nan
>>> r = realized_performance(labels, scores, task="binary", metrics=["roc_auc", "f1"],
...                          threshold=0.5, n_boot=200)
>>> r.n, r.n_unlabelled, r.positives
(1900, 100, 948)
>>> m = r.metrics["roc_auc"]
>>> print(f"{m.value:.4f} [{m.low:.4f}, {m.high:.4f}]")
0.8398 [0.8224, 0.8558]
>>> one = realized_performance(np.zeros(50), scores[:50], task="binary",
...                            metrics=["roc_auc"], threshold=0.5, n_boot=10)
>>> one.metrics["roc_auc"]
MetricValue(value=None, low=None, high=None, reason='one class only: 0 positives in 50 rows')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from setpoint._json import jsonable
from setpoint.config.spec import Task
from setpoint.errors import InvalidParameterError
from setpoint.train._kernels import (
    BinaryKernel,
    Kernel,
    MulticlassKernel,
    RegressionKernel,
    Sample,
)
from setpoint.train.metrics import make_kernel, metric_names

__all__ = ["MetricValue", "PerformanceResult", "SegmentPerformance", "realized_performance"]

FloatArray = npt.NDArray[np.float64]
_CHUNK_CELLS = 250_000
_THRESHOLDED = {"precision", "recall", "f1", "accuracy", "positive_rate"}
_RANKING = {"roc_auc", "pr_auc", "recall_at_precision"}


@dataclass(frozen=True)
class MetricValue:
    """A point value and its bootstrap interval; all None, with a reason, when undefined."""

    value: float | None
    low: float | None
    high: float | None
    reason: str | None = None


@dataclass(frozen=True)
class SegmentPerformance:
    """One value of one segment column; ``skipped`` says why it has no metrics."""

    column: str
    segment: Any
    n: int
    positives: int | None
    metrics: dict[str, MetricValue]
    skipped: str | None = None


@dataclass(frozen=True)
class PerformanceResult:
    task: str
    n: int
    n_unlabelled: int
    positives: int | None
    metrics: dict[str, MetricValue]
    segments: tuple[SegmentPerformance, ...]
    threshold: float | None
    confidence: float
    n_boot: int

    def value(self, name: str) -> float | None:
        return self.metrics[name].value

    def to_dict(self) -> dict[str, Any]:
        return dict(jsonable(asdict(self)))


def _fail(parameter: str, expected: str, got: Any) -> InvalidParameterError:
    return InvalidParameterError(
        owner="realized_performance", parameter=parameter, expected=expected, got=got
    )


def _allowed(task: Task) -> set[str]:
    if task is Task.BINARY:
        return set(BinaryKernel.names) | {"accuracy"}
    return set(MulticlassKernel.names if task is Task.MULTICLASS else RegressionKernel.names)


def _batch(kernel: Kernel, name: str, sample: Sample, rows: int) -> FloatArray:
    if name == "accuracy" and isinstance(kernel, BinaryKernel):
        tn, _, _, tp = sample.histogram(kernel.confusion, 4).T
        return np.asarray((tn + tp) / rows, dtype=np.float64)
    return kernel.batch(name, sample)


def _reason(task: Task, name: str, y: FloatArray) -> str:
    rows = y.size
    if task is Task.BINARY:
        positives = int(y.sum())
        if name in _RANKING:
            return f"one class only: {positives} positives in {rows} rows"
        if name == "precision":
            return "no score reaches the threshold: no predicted positives"
        if name == "recall":
            return f"no positive labels in {rows} rows"
        if name == "f1":
            return f"no positive labels and no predicted positives in {rows} rows"
    if name == "roc_auc":
        return f"fewer than two classes among {rows} rows"
    return f"undefined on these {rows} rows"


def _measure(
    task: Task,
    y: FloatArray,
    scores: FloatArray,
    names: Sequence[str],
    *,
    threshold: float | None,
    confidence: float,
    n_boot: int,
    seed: int,
) -> dict[str, MetricValue]:
    rows = y.size
    if rows == 0:
        return {name: MetricValue(None, None, None, "no labelled rows") for name in names}
    kernel = make_kernel(task, y, scores, threshold=threshold)
    everything = Sample.everything(rows)
    one_class = task is Task.BINARY and y.min() == y.max()
    points: dict[str, float | None] = {}
    reasons: dict[str, str] = {}
    for name in names:
        value = float(_batch(kernel, name, everything, rows)[0])
        # An all-positive window has a PR-AUC of 1 by arithmetic, which says
        # nothing about the model; it is as undefined as the ROC-AUC.
        if np.isnan(value) or (one_class and name in _RANKING):
            points[name] = None
            reasons[name] = _reason(task, name, y)
        else:
            points[name] = value
    wanted = [name for name in names if points[name] is not None]
    replicates: dict[str, list[FloatArray]] = {name: [] for name in wanted}
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _CHUNK_CELLS // rows)
    for start in range(0, n_boot if wanted else 0, per_chunk):
        draws = rng.integers(0, rows, size=(min(per_chunk, n_boot - start), rows))
        sample = Sample(draws.astype(np.int64), rows)
        for name in wanted:
            replicates[name].append(_batch(kernel, name, sample, rows))
    tail = (1 - confidence) / 2
    out: dict[str, MetricValue] = {}
    for name in names:
        point = points[name]
        if point is None:
            out[name] = MetricValue(None, None, None, reasons[name])
            continue
        values = np.concatenate(replicates[name])
        values = values[~np.isnan(values)]
        if values.size == 0:
            out[name] = MetricValue(point, None, None, "undefined on every bootstrap resample")
            continue
        low, high = (float(q) for q in np.quantile(values, [tail, 1 - tail]))
        out[name] = MetricValue(point, low, high)
    return out


def _segment_label(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    return value if isinstance(value, str | int | float | bool) else str(value)


def realized_performance(
    labels: Any,
    scores: Any,
    *,
    task: Task | str,
    metrics: Sequence[str] | None = None,
    threshold: float | None = None,
    segments: Mapping[str, Any] | None = None,
    min_segment_rows: int = 200,
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> PerformanceResult:
    """Metrics of ``scores`` against ``labels``, with bootstrap intervals, overall and by segment.

    ``labels`` may hold missing values for rows not labelled yet. ``metrics``
    defaults to every quality metric of the task (plus accuracy for binary).
    ``threshold`` is required for the thresholded binary metrics. ``segments``
    maps a column name to one value per row; values with fewer than
    ``min_segment_rows`` labelled rows are listed as skipped.
    """
    try:
        kind = Task(task)
    except ValueError:
        raise _fail("task", f"one of {[t.value for t in Task]}", task) from None
    names = list(dict.fromkeys(metrics if metrics is not None else metric_names(kind)))
    if metrics is None and kind is Task.BINARY:
        names.append("accuracy")
    if not names or not set(names) <= _allowed(kind):
        raise _fail("metrics", f"a non-empty subset of {sorted(_allowed(kind))}", metrics)
    if kind is Task.BINARY and threshold is None and _THRESHOLDED & set(names):
        raise _fail("threshold", "the model's decision threshold", threshold)
    if not 0 < confidence < 1:
        raise _fail("confidence", "in (0, 1)", confidence)
    for parameter, number, least in (
        ("n_boot", n_boot, 1),
        ("min_segment_rows", min_segment_rows, 1),
    ):
        if isinstance(number, bool) or not isinstance(number, int) or number < least:
            raise _fail(parameter, f"an integer >= {least}", number)
    y_all = np.asarray(labels, dtype=object)
    s_all = np.asarray(scores, dtype=np.float64)
    if y_all.ndim != 1 or s_all.shape[:1] != y_all.shape or np.isnan(s_all).any():
        raise _fail("scores", f"one score (no NaN) per label ({y_all.shape})", s_all.shape)
    labelled = ~pd.isna(y_all)
    try:
        y = y_all[labelled].astype(np.float64)
    except (TypeError, ValueError):
        raise _fail("labels", "numbers, booleans or class codes", y_all[labelled][:3]) from None
    s = s_all[labelled]

    def measure(rows: npt.NDArray[np.intp] | slice) -> dict[str, MetricValue]:
        return _measure(
            kind,
            y[rows],
            s[rows],
            names,
            threshold=threshold,
            confidence=confidence,
            n_boot=n_boot,
            seed=seed,
        )

    def positives_of(values: FloatArray) -> int | None:
        return int(values.sum()) if kind is Task.BINARY else None

    found: list[SegmentPerformance] = []
    for column, raw in (segments or {}).items():
        values = pd.Series(np.asarray(raw, dtype=object))
        if len(values) != y_all.size:
            raise _fail(f"segments[{column!r}]", f"one value per row ({y_all.size})", len(values))
        codes, uniques = pd.factorize(values[labelled].reset_index(drop=True))
        labels_of = [_segment_label(v) for v in uniques] + [None]
        codes = np.where(codes < 0, len(uniques), codes)  # missing values form one segment
        sizes = np.bincount(codes, minlength=len(labels_of))
        # Largest first; ties by label, so the order is reproducible.
        groups = sorted(np.flatnonzero(sizes), key=lambda c: (-sizes[c], str(labels_of[c])))
        for code in groups:
            rows = np.flatnonzero(codes == code)
            entry = SegmentPerformance(
                column, labels_of[code], int(rows.size), positives_of(y[rows]), {}
            )
            if rows.size < min_segment_rows:
                skipped = (
                    f"{rows.size} labelled rows, fewer than min_segment_rows={min_segment_rows}"
                )
                found.append(replace(entry, skipped=skipped))
            else:
                found.append(replace(entry, metrics=measure(rows)))
    return PerformanceResult(
        task=kind.value,
        n=int(y.size),
        n_unlabelled=int((~labelled).sum()),
        positives=positives_of(y),
        metrics=measure(slice(None)),
        segments=tuple(found),
        threshold=threshold,
        confidence=confidence,
        n_boot=n_boot,
    )
