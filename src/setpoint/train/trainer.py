"""Train one model from a DataFrame and a recipe.

The steps: check the arguments and the target, split by time, fit the
preprocessor on training rows, fit the model family with early stopping on the
validation slice, calibrate and choose the threshold on the validation slice
(binary), then score the untouched test slice overall and per segment.
Calibration and thresholds apply to binary tasks only: multiclass models keep
LightGBM's (or the softmax's) probabilities, whatever ``recipe.calibration`` says.
Validation metrics are computed after calibration on that same slice, so they
flatter; the test metrics are the honest ones.

The same data, columns and recipe (including its seed) give a byte-identical
model: LightGBM runs deterministically and every file is canonical JSON or
LightGBM text.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from setpoint.config.spec import ModelRecipe, Task
from setpoint.errors import InvalidParameterError, SchemaError, SetpointError, TrainingError
from setpoint.train.calibrate import Calibrator, ThresholdChoice, choose_threshold
from setpoint.train.fitting import fit_lightgbm, fit_linear, lightgbm_params
from setpoint.train.heads import LightGBMHead, LinearHead
from setpoint.train.metrics import compute_metrics, metric_names, segment_metrics
from setpoint.train.prepare import prepare
from setpoint.train.tabular_model import TabularModel

__all__ = ["TrainResult", "train_model"]

FloatArray = npt.NDArray[np.float64]
ProgressCallback = Callable[[str, float], None]


@dataclass
class TrainResult:
    """A trained model with its evaluation.

    ``test_scores`` (as ``model.predict_scores`` returns them), ``test_labels``
    (encoded: 0/1, class codes or values) and ``test_index`` (row positions in
    the training DataFrame) stay in memory for a promotion gate.
    """

    model: TabularModel
    metrics: dict[str, dict[str, float]]
    segment_metrics: dict[str, list[dict[str, Any]]]
    split: dict[str, Any]
    params: dict[str, Any]
    best_iteration: int | None
    n_features: int
    timings: dict[str, float]
    test_scores: FloatArray
    test_labels: FloatArray
    test_index: npt.NDArray[np.int64]
    threshold: ThresholdChoice | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Everything but the model and the arrays, JSON-safe (NaN becomes ``None``)."""
        safe: dict[str, Any] = _json_safe(
            {
                "metrics": self.metrics,
                "segment_metrics": self.segment_metrics,
                "split": self.split,
                "params": self.params,
                "best_iteration": self.best_iteration,
                "n_features": self.n_features,
                "timings": self.timings,
                "threshold": self.threshold.to_dict() if self.threshold else None,
                "notes": self.notes,
            }
        )
        return safe


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _check_arguments(
    df: pd.DataFrame,
    task: Task,
    target: str,
    features: Sequence[str],
    timestamp: str | None,
    segments: Sequence[str],
    recipe: ModelRecipe,
    primary_metric: str,
) -> None:
    owner = "train_model"
    if not isinstance(recipe, ModelRecipe):
        raise InvalidParameterError(
            owner=owner, parameter="recipe", expected="a ModelRecipe", got=type(recipe).__name__
        )
    if not features or len(set(features)) != len(features):
        raise InvalidParameterError(
            owner=owner,
            parameter="features",
            expected="distinct column names, at least one",
            got=features,
        )
    clash = set(features) & {target, timestamp}
    if clash:
        raise InvalidParameterError(
            owner=owner,
            parameter="features",
            expected="not the target or timestamp",
            got=sorted(clash),
        )
    allowed = metric_names(task)
    if primary_metric not in allowed:
        raise InvalidParameterError(
            owner=owner,
            parameter="primary_metric",
            expected=f"one of {allowed}",
            got=primary_metric,
        )
    if recipe.class_weight == "balanced" and task is Task.REGRESSION:
        raise InvalidParameterError(
            owner=owner,
            parameter="recipe.class_weight",
            expected="'none' for a regression task",
            got=recipe.class_weight,
        )
    for column in [target, *features, *segments, *([timestamp] if timestamp else [])]:
        if column not in df.columns:
            raise SchemaError(f"Column {column!r} is not in the training data.", column=column)


def _check_weights(sample_weight: npt.ArrayLike | None, rows: int) -> FloatArray | None:
    if sample_weight is None:
        return None
    try:
        weights = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError):
        weights = np.array([np.nan])
    if weights.shape != (rows,) or not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise InvalidParameterError(
            owner="train_model",
            parameter="sample_weight",
            expected=f"{rows} finite, non-negative numbers (one per row)",
            got=f"shape {weights.shape}" if weights.shape != (rows,) else "a negative or NaN",
        )
    if not weights.any():
        raise InvalidParameterError(
            owner="train_model",
            parameter="sample_weight",
            expected="at least one positive weight",
            got="all zeros",
        )
    return weights


def _balanced_weights(y: FloatArray) -> FloatArray:
    """Weights ``n / (k * n_class)`` so every class carries the same total weight."""
    codes = y.astype(np.int64)
    counts = np.bincount(codes).astype(np.float64)
    present = counts > 0
    per_class = np.zeros_like(counts)
    per_class[present] = y.size / (present.sum() * counts[present])
    return np.asarray(per_class[codes], dtype=np.float64)


@contextmanager
def _library_errors(family: str) -> Iterator[None]:
    """Turn the model library's complaints about parameters or values into a TrainingError.

    They are raised deep inside LightGBM or scikit-learn, where the user's
    ``model.params`` and columns are no longer named; this boundary names them.
    """
    import lightgbm as lgb

    try:
        yield
    except SetpointError:
        raise
    except (lgb.basic.LightGBMError, ValueError, TypeError) as exc:
        hint = ""
        if "NaN" in str(exc) or "infinity" in str(exc):
            hint = (
                " A numeric feature may hold values too large to standardize (e.g. ±1e308);"
                " clip it, exclude it, or use family: lightgbm."
            )
        raise TrainingError(
            f"The {family} family refused the recipe or the data: {exc}. "
            f"Check model.params in the spec.{hint}",
            family=family,
        ) from None


def train_model(
    df: pd.DataFrame,
    *,
    task: Task | str,
    target: str,
    features_numeric: Sequence[str],
    features_categorical: Sequence[str],
    timestamp: str | None,
    recipe: ModelRecipe,
    segments: Sequence[str] = (),
    primary_metric: str,
    progress: ProgressCallback | None = None,
    positive_label: Any = None,
    min_segment_rows: int = 30,
    sample_weight: npt.ArrayLike | None = None,
) -> TrainResult:
    """Train, calibrate and evaluate one model; see the module docstring for the steps.

    ``progress(stage, fraction)`` is called as work advances, ``fraction`` in [0, 1].
    ``sample_weight`` (one non-negative number per row of ``df``) weighs the
    training rows only: validation and test rows count equally, so that the
    metrics stay comparable between models.
    """
    try:
        task = Task(task)
    except ValueError:
        raise InvalidParameterError(
            owner="train_model",
            parameter="task",
            expected=f"one of {[t.value for t in Task]}",
            got=task,
        ) from None
    features = [*features_numeric, *features_categorical]
    _check_arguments(df, task, target, features, timestamp, segments, recipe, primary_metric)
    row_weights = _check_weights(sample_weight, len(df))
    report = progress or (lambda stage, fraction: None)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str, fraction: float) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = round(now - clock, 4)
        clock = now
        report(stage, fraction)

    report("prepare", 0.0)
    prep = prepare(
        df,
        task=task,
        target=target,
        features_numeric=features_numeric,
        features_categorical=features_categorical,
        timestamp=timestamp,
        recipe=recipe,
        positive_label=positive_label,
    )
    lap("prepare", 0.1)

    notes: list[str] = []
    best_iteration: int | None = None
    head: LightGBMHead | LinearHead
    if recipe.family == "lightgbm":
        params, rounds, stopping = lightgbm_params(
            task=task,
            recipe=recipe,
            n_classes=len(prep.classes),
            primary_metric=primary_metric,
            y_train=prep.y["train"],
        )
        weights = None if row_weights is None else row_weights[prep.split.train]
        if recipe.class_weight == "balanced" and task is Task.MULTICLASS:
            balanced = _balanced_weights(prep.y["train"])
            weights = balanced if weights is None else weights * balanced
        with _library_errors("lightgbm"):
            head, best_iteration = fit_lightgbm(
                params=params,
                rounds=rounds,
                stopping=stopping,
                train=(prep.x["train"], prep.y["train"]),
                valid=(prep.x["valid"], prep.y["valid"]),
                feature_names=prep.preprocessor.feature_names_out(),
                categorical=prep.preprocessor.categorical_indices,
                weights=weights,
                progress=lambda fraction: report("fit", 0.1 + 0.75 * fraction),
            )
        params = {**params, "num_boost_round": rounds, "early_stopping_rounds": stopping}
    else:
        with _library_errors("linear"):
            head, params, notes = fit_linear(
                task=task,
                recipe=recipe,
                n_classes=len(prep.classes),
                train=(prep.x["train"], prep.y["train"]),
                weights=None if row_weights is None else row_weights[prep.split.train],
            )
    lap("fit", 0.85)

    calibrator: Calibrator | None = None
    threshold: ThresholdChoice | None = None
    raw = {name: head.predict(prep.x[name]) for name in ("valid", "test")}
    scores = dict(raw)
    if task is Task.BINARY:
        calibrator = Calibrator(recipe.calibration).fit(raw["valid"], prep.y["valid"])
        scores = {name: calibrator.transform(values) for name, values in raw.items()}
        threshold = choose_threshold(prep.y["valid"], scores["valid"], recipe.threshold)
        if threshold.fallback:
            notes.append(f"threshold: {threshold.note}")
    model = TabularModel(
        task=task,
        target=target,
        preprocessor=prep.preprocessor,
        head=head,
        classes=prep.classes,
        calibrator=calibrator,
        threshold=threshold,
    )
    lap("calibrate", 0.9)

    options: dict[str, Any] = {
        "threshold": threshold.value if threshold else None,
        "precision_target": recipe.threshold.precision or 0.8,
    }
    evaluated = ["valid", "test"] if prep.split.test.size else ["valid"]
    metrics = {
        name: compute_metrics(task, prep.y[name], scores[name], **options) for name in evaluated
    }
    by_segment: dict[str, list[dict[str, Any]]] = {}
    if prep.split.test.size:
        for column in segments:
            by_segment[column] = segment_metrics(
                task,
                prep.y["test"],
                scores["test"],
                df[column].iloc[prep.split.test],
                min_rows=min_segment_rows,
                **options,
            )
    lap("evaluate", 1.0)
    timings["total"] = round(sum(timings.values()), 4)
    return TrainResult(
        model=model,
        metrics=metrics,
        segment_metrics=by_segment,
        split=prep.split.summary(),
        params=params,
        best_iteration=best_iteration,
        n_features=len(features),
        timings=timings,
        test_scores=scores["test"],
        test_labels=prep.y["test"],
        test_index=prep.split.test,
        threshold=threshold,
        notes=notes,
    )
