from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from setpoint.errors import InvalidParameterError
from setpoint.train.metrics import (
    HIGHER_IS_BETTER,
    compute_metrics,
    metric_function,
    metric_names,
    segment_metrics,
)


def _recall_at_precision(y: np.ndarray, scores: np.ndarray, target: float) -> float:
    precision, recall, _ = skm.precision_recall_curve(y, scores)
    reached = recall[precision >= target]
    return float(reached.max()) if reached.size else 0.0


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 300),
    decimals=st.sampled_from([1, 2, 6]),  # few decimals make many ties
    threshold=st.floats(0.05, 0.95),
)
def test_binary_metrics_match_scikit_learn(
    seed: int, n: int, decimals: int, threshold: float
) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]  # both classes, so every metric is defined
    scores = np.round(rng.random(n), decimals).clip(0.001, 0.999)
    got = compute_metrics("binary", y, scores, threshold=threshold, precision_target=0.6)
    predicted = scores >= threshold
    expected = {
        "roc_auc": skm.roc_auc_score(y, scores),
        "pr_auc": skm.average_precision_score(y, scores),
        "log_loss": skm.log_loss(y, scores),
        "brier": skm.brier_score_loss(y, scores),
        "recall_at_precision": _recall_at_precision(y, scores, 0.6),
        "recall": skm.recall_score(y, predicted),
        "f1": skm.f1_score(y, predicted, zero_division=0.0),
        "positive_rate": predicted.mean(),
        "base_rate": y.mean(),
    }
    if predicted.any():
        expected["precision"] = skm.precision_score(y, predicted)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(4, 300), k=st.integers(2, 6))
def test_multiclass_metrics_match_scikit_learn(seed: int, n: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    y = np.r_[np.arange(k), rng.integers(0, k, n)]  # every class present
    proba = rng.random((y.size, k))
    proba /= proba.sum(axis=1, keepdims=True)
    got = compute_metrics("multiclass", y, proba)
    predicted = proba.argmax(axis=1)
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, proba), abs=1e-12)
    if k == 2:  # scikit-learn wants the positive column alone
        expected_auc = skm.roc_auc_score(y, proba[:, 1])
    else:
        expected_auc = skm.roc_auc_score(y, proba, multi_class="ovr", average="macro")
    assert got["roc_auc"] == pytest.approx(expected_auc, abs=1e-12)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, predicted), abs=1e-12)
    assert got["macro_f1"] == pytest.approx(skm.f1_score(y, predicted, average="macro"), abs=1e-12)


def test_regression_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    y, guess = rng.normal(size=500), rng.normal(size=500)
    got = compute_metrics("regression", y, guess)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, guess), abs=1e-12)
    assert got["rmse"] == pytest.approx(skm.root_mean_squared_error(y, guess), abs=1e-12)


def test_undefined_metrics_are_nan_not_errors() -> None:
    one_class = compute_metrics("binary", [1, 1, 1], [0.2, 0.3, 0.9], threshold=0.95)
    assert math.isnan(one_class["roc_auc"])
    assert math.isnan(one_class["precision"])  # nothing predicted positive
    assert one_class["recall"] == 0.0
    assert one_class["pr_auc"] == 1.0
    no_positive = compute_metrics("binary", [0, 0], [0.2, 0.3])
    assert math.isnan(no_positive["pr_auc"])
    assert math.isnan(no_positive["recall_at_precision"])
    empty = compute_metrics("binary", [], [])
    assert all(math.isnan(v) for v in empty.values())
    assert all(math.isnan(v) for v in compute_metrics("regression", [], []).values())
    lonely = compute_metrics("multiclass", [0, 0], np.array([[0.9, 0.1], [0.6, 0.4]]))
    assert math.isnan(lonely["roc_auc"])
    assert lonely["accuracy"] == 1.0


def test_segment_metrics_are_sorted_by_size_and_skip_small_segments() -> None:
    rng = np.random.default_rng(1)
    segments = pd.Series(["a"] * 50 + ["b"] * 120 + [None] * 60 + ["tiny"] * 5)
    y = rng.integers(0, 2, len(segments))
    scores = rng.random(len(segments))
    result = segment_metrics("binary", y, scores, segments, min_rows=20, threshold=0.5)
    assert [(r["segment"], r["n"]) for r in result] == [("b", 120), (None, 60), ("a", 50)]
    first = result[0]
    assert first["positives"] == int(y[50:170].sum())
    assert first["metrics"] == compute_metrics("binary", y[50:170], scores[50:170], threshold=0.5)
    regression = segment_metrics("regression", scores, scores, segments, min_rows=1)
    assert [r["positives"] for r in regression] == [None] * 4
    assert regression[0]["metrics"]["mae"] == 0.0


def test_segment_values_come_back_json_safe() -> None:
    segments = pd.Series(np.array([3, 3, 4], dtype=np.int64))
    result = segment_metrics("regression", [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], segments, min_rows=1)
    assert [type(r["segment"]) for r in result] == [int, int]


def test_metric_function_and_orientation() -> None:
    assert metric_function("roc_auc")([0, 1], [0.1, 0.9]) == 1.0
    assert metric_function("log_loss")([0, 1], np.array([[0.5, 0.5], [0.5, 0.5]])) == (
        pytest.approx(math.log(2))
    )
    assert metric_function("accuracy")([1, 0], np.array([[0.2, 0.8], [0.6, 0.4]])) == 1.0
    assert metric_function("mae")([1.0, 3.0], [2.0, 2.0]) == 1.0
    assert not HIGHER_IS_BETTER["log_loss"]
    assert HIGHER_IS_BETTER["pr_auc"]
    for task in ("binary", "multiclass", "regression"):
        assert set(metric_names(task)) <= set(HIGHER_IS_BETTER)
    with pytest.raises(InvalidParameterError):
        metric_function("auc")


def test_shape_mismatches_are_parameter_errors() -> None:
    with pytest.raises(InvalidParameterError):
        compute_metrics("binary", [0, 1], [0.5])
    with pytest.raises(InvalidParameterError):
        compute_metrics("multiclass", [0, 1], [0.5, 0.5])
    with pytest.raises(InvalidParameterError):
        compute_metrics("ranking", [0, 1], [0.5, 0.5])
    with pytest.raises(InvalidParameterError):
        segment_metrics("binary", [0, 1], [0.5, 0.5], pd.Series(["a"]), min_rows=1)


def test_raw_labels_are_refused_rather_than_scored_wrong() -> None:
    with pytest.raises(InvalidParameterError, match="encode_labels"):
        compute_metrics("binary", np.array(["no", "yes"]), [0.2, 0.8])
    with pytest.raises(InvalidParameterError):
        compute_metrics("binary", [0, 2], [0.2, 0.8])
    with pytest.raises(InvalidParameterError):
        compute_metrics("multiclass", ["EWR", "JFK"], np.eye(2))
    with pytest.raises(InvalidParameterError):
        metric_function("rmse")(["a", "b"], [1.0, 2.0])
    booleans = np.array([True, False], dtype=object)  # what pandas hands over
    assert compute_metrics("binary", booleans, [0.9, 0.1])["roc_auc"] == 1.0
