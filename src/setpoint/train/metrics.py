"""Evaluation metrics per task, per segment, and as plain functions.

Inputs by task:

* binary: ``y`` in {0, 1} (or bool), ``scores`` the positive-class probability;
* multiclass: ``y`` integer class codes ``0..k-1``, ``scores`` an ``(n, k)`` matrix;
* regression: ``y`` and ``scores`` numbers.

A metric that is undefined on the given rows (an AUC with one class, a
precision with no predicted positive) is NaN, never an exception. The
implementation is vectorised (see ``_kernels``) so that a bootstrap can call it
a thousand times on tens of thousands of rows.

>>> compute_metrics("binary", [0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9], threshold=0.5)["roc_auc"]
0.75
>>> metric_function("rmse")([1.0, 2.0], [1.0, 4.0])
1.4142135623730951
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from setpoint.config.spec import Task
from setpoint.errors import InvalidParameterError
from setpoint.train._kernels import (
    BinaryKernel,
    Kernel,
    MulticlassKernel,
    RegressionKernel,
    Sample,
)

__all__ = [
    "HIGHER_IS_BETTER",
    "compute_metrics",
    "evaluate",
    "make_kernel",
    "metric_function",
    "metric_names",
    "segment_metrics",
]

HIGHER_IS_BETTER: dict[str, bool] = {
    "roc_auc": True,
    "pr_auc": True,
    "log_loss": False,
    "brier": False,
    "recall_at_precision": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "accuracy": True,
    "macro_f1": True,
    "mae": False,
    "rmse": False,
}

_BINARY_ONLY = {"pr_auc", "brier", "recall_at_precision", "precision", "recall", "f1"}
_MULTICLASS_ONLY = {"accuracy", "macro_f1"}
_REGRESSION = {"mae", "rmse"}


def _task(task: Task | str) -> Task:
    try:
        return Task(task)
    except ValueError:
        raise InvalidParameterError(
            owner="metrics",
            parameter="task",
            expected=f"one of {[t.value for t in Task]}",
            got=task,
        ) from None


def _labels(task: Task, y: npt.NDArray[Any], classes: int) -> npt.NDArray[np.float64]:
    """``y`` as numbers. Raw class labels are refused: scored as they are, every
    non-empty string would count as a positive."""
    wanted = {
        Task.REGRESSION: "numbers",
        Task.BINARY: "0/1 or booleans",
        Task.MULTICLASS: f"class codes 0..{classes - 1}",
    }[task]
    try:
        numbers = y.astype(np.float64)
        codes = np.arange(2 if task is Task.BINARY else classes, dtype=np.float64)
        ok = task is Task.REGRESSION or bool(np.isin(numbers, codes).all())
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InvalidParameterError(
            owner="metrics",
            parameter="y_true",
            expected=f"{wanted} (encode raw labels with TabularModel.encode_labels)",
            got=f"values like {np.unique(y.astype(str))[:3].tolist()}",
        )
    return numbers


def make_kernel(
    task: Task | str,
    y: Any,
    scores: Any,
    *,
    threshold: float | None = None,
    precision_target: float = 0.8,
) -> Kernel:
    """The metric kernel for ``task``, after checking that the shapes agree."""
    task = _task(task)
    y_arr, s_arr = np.asarray(y), np.asarray(scores, dtype=np.float64)
    want_ndim = 2 if task is Task.MULTICLASS else 1
    if y_arr.ndim != 1 or s_arr.ndim != want_ndim or s_arr.shape[0] != y_arr.shape[0]:
        raise InvalidParameterError(
            owner="metrics",
            parameter="scores",
            expected=f"{want_ndim}-D with one row per label ({y_arr.shape[0]})",
            got=f"shape {s_arr.shape}",
        )
    if not 0 < precision_target <= 1:
        raise InvalidParameterError(
            owner="metrics",
            parameter="precision_target",
            expected="in (0, 1]",
            got=precision_target,
        )
    y_arr = _labels(task, y_arr, s_arr.shape[1] if s_arr.ndim == 2 else 2)
    if task is Task.BINARY:
        cut = 0.5 if threshold is None else threshold
        return BinaryKernel(y_arr, s_arr, threshold=cut, precision_target=precision_target)
    if task is Task.MULTICLASS:
        return MulticlassKernel(y_arr, s_arr)
    return RegressionKernel(y_arr, s_arr)


def compute_metrics(
    task: Task | str,
    y_true: Any,
    scores: Any,
    *,
    threshold: float | None = None,
    precision_target: float = 0.8,
) -> dict[str, float]:
    """Every metric of ``task``; the threshold (default 0.5) only matters for binary."""
    kernel = make_kernel(
        task, y_true, scores, threshold=threshold, precision_target=precision_target
    )
    rows = np.shape(y_true)[0]
    return {name: evaluate(kernel, name, rows) for name in kernel.names}


def evaluate(kernel: Kernel, name: str, rows: int) -> float:
    """One metric of ``kernel`` on all of its ``rows``; NaN when there are none."""
    if rows == 0:
        return float("nan")
    return float(kernel.batch(name, Sample.everything(rows))[0])


def _segment_value(value: Any) -> Any:
    """A JSON-safe segment label; missing becomes ``None``."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value if isinstance(value, str | int | float | bool) else str(value)


def segment_metrics(
    task: Task | str,
    y: Any,
    scores: Any,
    segments: pd.Series,
    *,
    min_rows: int,
    threshold: float | None = None,
    precision_target: float = 0.8,
) -> list[dict[str, Any]]:
    """Metrics per value of ``segments`` with at least ``min_rows`` rows, largest first.

    Each entry is ``{"segment", "n", "positives", "metrics"}``; ``positives`` is
    ``None`` except for binary tasks. Missing segment values form one segment
    labelled ``None``.
    """
    task = _task(task)
    y_arr, s_arr = np.asarray(y), np.asarray(scores, dtype=np.float64)
    if len(segments) != y_arr.shape[0]:
        raise InvalidParameterError(
            owner="segment_metrics",
            parameter="segments",
            expected=f"one value per row ({y_arr.shape[0]})",
            got=f"{len(segments)} values",
        )
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 1:
        raise InvalidParameterError(
            owner="segment_metrics", parameter="min_rows", expected="an integer >= 1", got=min_rows
        )
    codes, uniques = pd.factorize(segments.reset_index(drop=True), use_na_sentinel=True)
    labels = [_segment_value(v) for v in uniques] + [None]
    codes = np.where(codes < 0, len(uniques), codes)  # missing values are the last group
    result: list[dict[str, Any]] = []
    for code in np.unique(codes):
        rows = np.flatnonzero(codes == code)
        if rows.size < min_rows:
            continue
        positives = int(np.asarray(y_arr[rows]).astype(bool).sum()) if task is Task.BINARY else None
        metrics = compute_metrics(
            task, y_arr[rows], s_arr[rows], threshold=threshold, precision_target=precision_target
        )
        result.append(
            {
                "segment": labels[code],
                "n": int(rows.size),
                "positives": positives,
                "metrics": metrics,
            }
        )
    result.sort(key=lambda entry: (-entry["n"], str(entry["segment"])))
    return result


def metric_function(
    name: str, *, threshold: float = 0.5, precision_target: float = 0.8
) -> Callable[[Any, Any], float]:
    """``f(y, scores) -> float`` for one metric; a 2-D ``scores`` means multiclass.

    >>> metric_function("pr_auc")([0, 1, 1], [0.2, 0.9, 0.4])
    1.0
    """
    if name not in HIGHER_IS_BETTER:
        raise InvalidParameterError(
            owner="metric_function",
            parameter="name",
            expected=f"one of {sorted(HIGHER_IS_BETTER)}",
            got=name,
        )

    def metric(y: Any, scores: Any) -> float:
        ndim = np.ndim(scores)
        if name in _REGRESSION:
            task = Task.REGRESSION
        elif name in _MULTICLASS_ONLY or (ndim == 2 and name not in _BINARY_ONLY):
            task = Task.MULTICLASS
        else:
            task = Task.BINARY
        kernel = make_kernel(
            task, y, scores, threshold=threshold, precision_target=precision_target
        )
        return evaluate(kernel, name, np.shape(y)[0])

    metric.__name__ = name
    return metric


def metric_names(task: Task | str) -> list[str]:
    """The quality metrics (those in ``HIGHER_IS_BETTER``) that fit ``task``."""
    task = _task(task)
    if task is Task.REGRESSION:
        return sorted(_REGRESSION)
    if task is Task.MULTICLASS:
        return ["accuracy", "log_loss", "macro_f1", "roc_auc"]
    return sorted(set(HIGHER_IS_BETTER) - _REGRESSION - _MULTICLASS_ONLY)
