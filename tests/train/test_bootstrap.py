from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from setpoint.errors import InvalidParameterError
from setpoint.train.bootstrap import paired_bootstrap
from setpoint.train.metrics import metric_function


def _scores(rng: np.random.Generator, y: np.ndarray, signal: float) -> np.ndarray:
    noisy = 0.5 + signal * (y - 0.5) + rng.normal(0, 0.25, y.size)
    return np.asarray(np.clip(noisy, 0.01, 0.99))


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, 3000)
    return y, _scores(rng, y, 0.2), _scores(rng, y, 0.5)


@pytest.mark.parametrize("metric", ["roc_auc", "pr_auc", "log_loss", "brier", "f1"])
def test_positive_delta_means_b_is_better(
    pair: tuple[np.ndarray, np.ndarray, np.ndarray], metric: str
) -> None:
    y, weak, strong = pair
    better = paired_bootstrap(y, weak, strong, metric=metric, n=300, confidence=0.95, seed=0)
    worse = paired_bootstrap(y, strong, weak, metric=metric, n=300, confidence=0.95, seed=0)
    assert better.delta > 0
    assert better.low > 0
    assert worse.delta < 0
    assert worse.high < 0
    assert better.delta == pytest.approx(-worse.delta)
    assert better.metric_a == pytest.approx(metric_function(metric)(y, weak))
    assert better.metric_b == pytest.approx(metric_function(metric)(y, strong))
    assert better.low <= better.delta <= better.high


def test_same_model_gives_a_zero_interval(pair: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    y, weak, _ = pair
    same = paired_bootstrap(y, weak, weak, metric="roc_auc", n=200, confidence=0.9, seed=0)
    assert (same.delta, same.low, same.high, same.n) == (0.0, 0.0, 0.0, 200)


def test_seeded_and_reproducible(pair: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    y, weak, strong = pair
    run = [
        paired_bootstrap(y, weak, strong, metric="pr_auc", n=200, confidence=0.9, seed=s)
        for s in (1, 1, 2)
    ]
    assert run[0] == run[1]
    assert run[0].low != run[2].low
    assert run[0].to_dict()["metric"] == "pr_auc"


def test_interval_widens_with_confidence_and_narrows_with_rows() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 8000)
    a, b = _scores(rng, y, 0.3), _scores(rng, y, 0.35)
    wide = paired_bootstrap(y, a, b, metric="roc_auc", n=400, confidence=0.99, seed=0)
    narrow = paired_bootstrap(y, a, b, metric="roc_auc", n=400, confidence=0.8, seed=0)
    assert wide.high - wide.low > narrow.high - narrow.low
    small = paired_bootstrap(
        y[:2000], a[:2000], b[:2000], metric="roc_auc", n=400, confidence=0.99, seed=0
    )
    # A quarter of the rows: about twice the width.
    assert 1.5 < (small.high - small.low) / (wide.high - wide.low) < 2.7


def test_interval_covers_a_true_zero_difference_about_as_often_as_promised() -> None:
    rng = np.random.default_rng(2024)
    covered = 0
    for _ in range(40):
        y = rng.integers(0, 2, 600)
        # Two equally good, different models: the true difference is zero.
        a, b = _scores(rng, y, 0.4), _scores(rng, y, 0.4)
        r = paired_bootstrap(y, a, b, metric="roc_auc", n=300, confidence=0.9, seed=0)
        covered += r.low <= 0 <= r.high
    assert covered >= 31  # 90% of 40 is 36; allow for simulation noise


def test_strata_keep_rare_positives_in_every_replicate() -> None:
    rng = np.random.default_rng(3)
    y = np.zeros(400, dtype=int)
    y[:2] = 1  # two positives: plain resamples often draw none, and the AUC is undefined
    a, b = rng.random(400), rng.random(400)
    plain = paired_bootstrap(y, a, b, metric="roc_auc", n=500, confidence=0.9, seed=0)
    stratified = paired_bootstrap(
        y, a, b, metric="roc_auc", n=500, confidence=0.9, seed=0, strata=y
    )
    assert plain.n < 500
    assert stratified.n == 500


def test_strata_keep_every_class_count_in_every_replicate() -> None:
    # Model b is sure of every class; model a of classes 0 and 1 only, and uniform on
    # class 2. The log-loss difference of a replicate is then its share of class-2 rows
    # times log 3: with each class's count kept, every replicate gives the same value.
    y = np.repeat([0, 1, 2], [300, 200, 100])
    sure = np.eye(3)[y] * 0.97 + 0.01
    unsure = sure.copy()
    unsure[y == 2] = 1 / 3
    result = paired_bootstrap(
        y, unsure, sure, metric="log_loss", n=100, confidence=0.9, seed=0, strata=y
    )
    assert result.n == 100
    assert result.low == pytest.approx(result.delta)
    assert result.high == pytest.approx(result.delta)
    plain = paired_bootstrap(y, unsure, sure, metric="log_loss", n=100, confidence=0.9, seed=0)
    assert plain.high - plain.low > 0.01  # without strata the share of class 2 varies


def test_a_single_positive_row_is_drawn() -> None:
    rng = np.random.default_rng(4)
    y = np.zeros(300, dtype=int)
    y[0] = 1  # the first row of its stratum, and of the frame
    a, b = rng.random(300), rng.random(300)
    stratified = paired_bootstrap(
        y, a, b, metric="roc_auc", n=100, confidence=0.9, seed=0, strata=y
    )
    assert stratified.n == 100
    plain = paired_bootstrap(y, a, b, metric="roc_auc", n=100, confidence=0.9, seed=0)
    assert 0 < plain.n < 100  # drawn in about 63% of the replicates


def test_defaults_are_a_thousand_replicates_at_95_percent_seeded_with_zero() -> None:
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, 200)
    a, b = _scores(rng, y, 0.3), _scores(rng, y, 0.4)
    default = paired_bootstrap(y, a, b, metric="brier")
    explicit = paired_bootstrap(y, a, b, metric="brier", n=1000, confidence=0.95, seed=0)
    assert default == explicit
    assert (default.n, default.confidence, default.metric) == (1000, 0.95, "brier")


def test_the_interval_is_the_percentile_interval_of_the_replicates() -> None:
    # b is right on the first half of the rows where a is off by one: each replicate's
    # MAE difference is the share of those rows it drew, whose spread is binomial.
    rows = 400
    y = np.zeros(rows)
    a = np.where(np.arange(rows) < rows // 2, 1.0, 0.0)
    result = paired_bootstrap(y, a, y, metric="mae", n=4000, confidence=0.9, seed=0)
    assert result.delta == 0.5
    half_width = 1.6449 * np.sqrt(0.25 / rows)  # the 5% and 95% normal quantiles
    assert result.low == pytest.approx(0.5 - half_width, abs=0.004)
    assert result.high == pytest.approx(0.5 + half_width, abs=0.004)
    assert result.confidence == 0.9


def test_no_defined_replicate_gives_an_undefined_interval() -> None:
    y = np.zeros(100, dtype=int)  # one class: no AUC in any resample
    rng = np.random.default_rng(8)
    result = paired_bootstrap(
        y, rng.random(100), rng.random(100), metric="roc_auc", n=50, confidence=0.9, seed=0
    )
    assert result.n == 0
    assert np.isnan(result.low)
    assert np.isnan(result.high)


def test_multiclass_and_regression_metrics() -> None:
    rng = np.random.default_rng(9)
    y = rng.integers(0, 3, 1500)
    sharp = np.eye(3)[y] * 0.6 + 0.4 / 3
    vague = np.full((1500, 3), 1 / 3)
    multi = paired_bootstrap(y, vague, sharp, metric="log_loss", n=200, confidence=0.9, seed=0)
    assert multi.low > 0
    target = rng.normal(size=1500)
    regression = paired_bootstrap(
        target, target + 1.0, target + 0.1, metric="rmse", n=200, confidence=0.9, seed=0
    )
    assert regression.delta == pytest.approx(0.9)
    assert regression.low > 0
    mae = paired_bootstrap(
        target, target - 1.0, target + 0.1, metric="mae", n=200, confidence=0.9, seed=0
    )
    assert (mae.metric_a, mae.metric_b) == (pytest.approx(1.0), pytest.approx(0.1))
    assert mae.low == pytest.approx(0.9)
    assert mae.high == pytest.approx(0.9)


def test_replicates_drawn_in_many_chunks_all_count_and_find_a_small_lead() -> None:
    # 30,000 rows take many chunks of replicates: every one must be kept, and the
    # interval of the chunks together must still find a two-point lead.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 30_000)
    a, b = _scores(rng, y, 0.3), _scores(rng, y, 0.32)
    result = paired_bootstrap(y, a, b, metric="pr_auc", n=500, confidence=0.95, seed=0)
    assert result.n == 500
    assert result.metric_a == pytest.approx(metric_function("pr_auc")(y, a))
    assert result.metric_b == pytest.approx(metric_function("pr_auc")(y, b))
    assert 0 < result.low < result.delta < result.high
    assert result.high - result.low < 0.03


@pytest.mark.parametrize(
    ("options", "parameter"),
    [
        ({"metric": "auc"}, "metric"),
        ({"n": 0}, "n"),
        ({"confidence": 1.0}, "confidence"),
        ({"strata": [0, 1]}, "strata"),
    ],
)
def test_bad_parameters(options: dict[str, Any], parameter: str) -> None:
    arguments: dict[str, Any] = {"metric": "roc_auc", "n": 10, "confidence": 0.9, "seed": 0}
    arguments.update(options)
    with pytest.raises(InvalidParameterError) as caught:
        paired_bootstrap([0, 1, 1], [0.1, 0.5, 0.9], [0.2, 0.4, 0.8], **arguments)
    assert caught.value.parameter == parameter
    with pytest.raises(InvalidParameterError):
        paired_bootstrap([0, 1], [0.1, 0.5], [0.2], metric="roc_auc")
