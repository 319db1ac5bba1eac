from __future__ import annotations

import json
import math
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest

from setpoint.config.spec import ThresholdSpec
from setpoint.errors import InvalidParameterError, TrainingError
from setpoint.train.calibrate import Calibrator, ThresholdChoice, choose_threshold
from setpoint.train.metrics import compute_metrics
from setpoint.train.trainer import TrainResult


def _overconfident(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from true probabilities, and scores pushed towards 0 and 1."""
    rng = np.random.default_rng(seed)
    truth = rng.beta(2, 5, n)
    y = (rng.random(n) < truth).astype(int)
    logit = np.log(truth / (1 - truth))
    return y, 1 / (1 + np.exp(-3 * logit + 1))


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_calibration_fixes_miscalibrated_scores_on_new_rows(method: Any) -> None:
    y_fit, s_fit = _overconfident(0, 5000)
    y_new, s_new = _overconfident(1, 5000)
    cal = Calibrator(method).fit(s_fit, y_fit)
    raw = compute_metrics("binary", y_new, s_new)
    fixed = compute_metrics("binary", y_new, cal.transform(s_new))
    assert fixed["brier"] < raw["brier"] - 0.005
    assert fixed["log_loss"] < raw["log_loss"]


def test_calibration_keeps_or_improves_brier_of_a_trained_model(
    flights: pd.DataFrame, binary_result: TrainResult
) -> None:
    model, y = binary_result.model, binary_result.test_labels
    assert model.calibrator is not None
    assert model.calibrator.method == "isotonic"
    test_rows = flights.iloc[binary_result.test_index]
    raw = compute_metrics("binary", y, model.predict_scores(test_rows, calibrated=False))
    calibrated = compute_metrics("binary", y, binary_result.test_scores)
    assert calibrated["brier"] <= raw["brier"] + 1e-3
    # Isotonic steps do not tie scores the model ranks apart.
    assert calibrated["roc_auc"] == pytest.approx(raw["roc_auc"], abs=1e-9)
    assert calibrated["pr_auc"] == pytest.approx(raw["pr_auc"], abs=1e-9)


@pytest.mark.parametrize("method", ["isotonic", "sigmoid", "none"])
def test_json_round_trip_is_exact(method: Any) -> None:
    y, s = _overconfident(2, 2000)
    cal = Calibrator(method).fit(s, y)
    again = Calibrator.from_dict(json.loads(json.dumps(cal.to_dict(), allow_nan=False)))
    assert again.to_dict() == cal.to_dict()
    grid = np.linspace(-0.5, 1.5, 401)  # outside [0, 1] too: isotonic clips
    np.testing.assert_array_equal(again.transform(grid.clip(0, 1)), cal.transform(grid.clip(0, 1)))


def test_isotonic_output_stays_inside_the_clip() -> None:
    y = np.array([0] * 50 + [1] * 50)
    s = np.linspace(0, 1, 100)  # perfectly separable: pure blocks of 0 and 1
    cal = Calibrator("isotonic").fit(s, y)
    out = cal.transform(s)
    assert out.min() == pytest.approx(1 / 102)
    assert out.max() == pytest.approx(1 - 1 / 102)
    assert np.all(np.diff(out) >= 0)


def test_none_is_the_identity() -> None:
    cal = Calibrator("none").fit([0.2, 0.7], [0, 1])
    assert cal.transform([0.25, 0.5]).tolist() == [0.25, 0.5]


def test_calibrator_errors() -> None:
    with pytest.raises(InvalidParameterError):
        Calibrator(cast(Any, "platt")).fit([0.1, 0.9], [0, 1])
    with pytest.raises(TrainingError, match="both classes"):
        Calibrator().fit([0.1, 0.9], [1, 1])
    with pytest.raises(TrainingError, match="not fitted"):
        Calibrator().transform([0.5])
    with pytest.raises(TrainingError, match="malformed"):
        Calibrator.from_dict({"method": "isotonic", "n": 3, "x": [0.1], "y": []})


def _brute_force(y: np.ndarray, p: np.ndarray) -> list[tuple[float, float, float, float]]:
    """(threshold, precision, recall, f1) at every distinct score."""
    rows = []
    for t in np.unique(p):
        predicted = p >= t
        tp = float((predicted & (y == 1)).sum())
        precision = tp / predicted.sum()
        recall = tp / (y == 1).sum()
        f1 = 2 * tp / (predicted.sum() + (y == 1).sum())
        rows.append((float(t), precision, recall, f1))
    return rows


def test_f1_threshold_is_the_best_f1() -> None:
    y, p = _overconfident(4, 3000)
    p = np.round(p, 3)
    choice = choose_threshold(y, p, ThresholdSpec(objective="f1"))
    best = max(_brute_force(y, p), key=lambda row: row[3])
    assert choice.f1 == pytest.approx(best[3])
    assert choice.value == best[0]
    assert not choice.fallback


def test_recall_at_precision_threshold_is_the_most_recall_above_the_target() -> None:
    y, p = _overconfident(5, 3000)
    p = np.round(p, 3)
    choice = choose_threshold(y, p, ThresholdSpec(objective="recall_at_precision", precision=0.6))
    eligible = [row for row in _brute_force(y, p) if row[1] >= 0.6]
    assert choice.precision >= 0.6
    assert choice.recall == pytest.approx(max(row[2] for row in eligible))


def test_unreachable_precision_falls_back_to_the_most_precise_threshold() -> None:
    y = np.array([0, 1, 0, 1, 0, 1])
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])  # the top score is a negative
    choice = choose_threshold(y, p, ThresholdSpec(objective="recall_at_precision", precision=0.9))
    assert choice.fallback
    assert "out of reach" in choice.note
    assert choice.value == 0.4
    assert choice.precision == pytest.approx(0.5)


def test_fixed_threshold_reports_its_validation_scores() -> None:
    choice = choose_threshold(
        [0, 1, 1], [0.2, 0.3, 0.8], ThresholdSpec(objective="fixed", value=0.5)
    )
    assert (choice.value, choice.precision, choice.recall) == (0.5, 1.0, 0.5)
    nothing = choose_threshold([0, 1], [0.2, 0.3], ThresholdSpec(objective="fixed", value=0.9))
    assert math.isnan(nothing.precision)
    stored = json.dumps(nothing.to_dict(), allow_nan=False)
    again = ThresholdChoice.from_dict(json.loads(stored))
    assert math.isnan(again.precision)
    assert again.value == 0.9
