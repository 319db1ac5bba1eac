"""One retrain as pure steps: the as-of training set, the model, the gate, the live comparison.

Everything runs on seeded synthetic data: a binary target that depends on three
numbers and a category, spread over 60 days, each label arriving a day after
its row.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from setpoint.autopilot.compare import compare_live
from setpoint.config.policy import DataPolicy
from setpoint.config.spec import GatePolicy, ModelRecipe, ProjectSpec
from setpoint.errors import InvalidParameterError, TrainingError
from setpoint.kinds.tabular import TABULAR
from setpoint.registry import gate
from setpoint.train.tabular_model import TabularModel
from setpoint.train.trainer import TrainResult, train_model
from setpoint.train.training_set import TrainingSet, training_set

START = datetime(2024, 1, 1, tzinfo=UTC)
NUMERIC = ["x1", "x2", "x3"]
CATEGORICAL = ["cat"]
SPEC = ProjectSpec(
    project="t",
    task="binary",
    target="y",
    timestamp="ts",
    model=ModelRecipe(params={"n_estimators": 30}),
)


def _synthetic(seed: int = 0, rows: int = 6_000, days: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.uniform(0, days * 86_400, rows))
    ts = pd.Timestamp(START) + pd.to_timedelta(seconds, unit="s")
    x1, x2, x3 = rng.normal(size=(3, rows))
    cat = rng.choice(["p", "q", "r"], rows)
    logit = 1.5 * x1 - x2 + 0.5 * x3 + np.where(cat == "p", 1.0, -0.5) - 1.0
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame({"ts": ts, "x1": x1, "x2": x2, "x3": x3, "cat": cat, "y": y})
    frame["label_time"] = frame["ts"] + pd.Timedelta(days=1)
    return frame


# --- the as-of training set ------------------------------------------------------------------

# A row every 30 minutes for 25 days; a label a day after each row. At AS_OF (day 14),
# labels have arrived for rows 0..624 (ts up to day 13, label_time up to day 14).
AS_OF = START + timedelta(days=14)
ARRIVED = 625
LATE = range(10)  # old rows whose labels arrive only after AS_OF
NEVER = range(10, 15)  # rows whose labels never arrived
NO_TARGET = range(15, 20)  # label_time set, but the target is missing


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    rows = 1_200
    ts = pd.Timestamp(START) + pd.to_timedelta(np.arange(rows) * 30, unit="min")
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "id": np.arange(rows),
            "ts": ts,
            "x": rng.normal(size=rows),
            "y": rng.integers(0, 2, rows).astype(float),
        }
    )
    frame["label_time"] = frame["ts"] + pd.Timedelta(days=1)
    frame.loc[list(LATE), "label_time"] = pd.Timestamp(AS_OF) + pd.Timedelta(hours=1)
    frame.loc[list(NEVER), "label_time"] = pd.NaT
    frame.loc[list(NO_TARGET), "y"] = np.nan
    # Shuffled: the training set must come out oldest first whatever the input order.
    return frame.sample(frac=1.0, random_state=7).reset_index(drop=True)


def _select(history: pd.DataFrame, **policy: Any) -> TrainingSet:
    return training_set(
        history,
        as_of=AS_OF,
        timestamp="ts",
        label_time="label_time",
        target="y",
        policy=DataPolicy(**{"min_rows": 100, **policy}),
    )


def retrain(
    spec: ProjectSpec, data: TrainingSet, *, numeric: list[str], categorical: list[str]
) -> TrainResult:
    """A retrain as the autopilot and the replay do it: the holdout is the test slice."""
    recipe = TABULAR.recipe(spec, split=data.split(valid_fraction=spec.model.split.valid_fraction))
    return TABULAR.build(
        data.frame,
        spec=spec,
        recipe=recipe,
        numeric=numeric,
        categorical=categorical,
        weights=data.weights,
    )


def judge(
    spec: ProjectSpec,
    data: TrainingSet,
    result: TrainResult,
    *,
    champion: TabularModel | None,
    challenger_version: int,
    champion_version: int | None,
) -> gate.GateDecision:
    """The gate on the retrain's holdout, the challenger against ``champion``."""
    index, evaluation = TABULAR.holdout(result)
    holdout = data.frame.iloc[index].reset_index(drop=True)
    return gate.judge(
        spec,
        holdout=holdout,
        challenger=evaluation,
        champion=None
        if champion is None
        else TABULAR.evaluate(champion, holdout, target=spec.target),
        challenger_version=challenger_version,
        champion_version=champion_version,
    )


def test_only_labels_arrived_by_as_of_are_used(history: pd.DataFrame) -> None:
    data = _select(history, mode="all", holdout=timedelta(days=2))
    ids = set(data.frame["id"])
    excluded = set(LATE) | set(NEVER) | set(NO_TARGET)
    assert ids == set(range(ARRIVED)) - excluded
    assert len(data.frame) == ARRIVED - len(excluded)
    # Row 624's label arrived exactly at AS_OF: it counts; row 625's arrives 30 min later.
    assert 624 in ids
    assert 625 not in ids
    assert (data.frame["label_time"] <= pd.Timestamp(AS_OF)).all()
    assert data.frame["ts"].is_monotonic_increasing
    assert data.frame.index.equals(pd.RangeIndex(len(data.frame)))
    assert data.weights is None
    assert data.as_of == AS_OF


def test_holdout_starts_a_holdout_before_the_last_row(history: pd.DataFrame) -> None:
    data = _select(history, mode="all", holdout=timedelta(days=2))
    last = pd.Timestamp(START) + pd.Timedelta(days=13)  # row 624
    assert data.frame["ts"].iloc[-1] == last
    assert data.holdout_from == last - pd.Timedelta(days=2)


def test_sliding_keeps_the_window_before_the_newest_label(history: pd.DataFrame) -> None:
    data = _select(history, mode="sliding", window=timedelta(days=5), holdout=timedelta(days=1))
    # Labels arrive a day late, so the newest labelled row is of day 13 (row 624), and
    # the window reaches back 5 days from it: day 8, row 384.
    newest = pd.Timestamp(AS_OF) - pd.Timedelta(days=1)
    assert data.frame["ts"].max() == newest
    start = newest - pd.Timedelta(days=5)
    assert data.frame["ts"].min() == start
    assert set(data.frame["id"]) == set(range(384, ARRIVED))
    everything = _select(history, mode="all", window=timedelta(days=5), holdout=timedelta(days=1))
    assert len(everything.frame) > len(data.frame)
    assert everything.frame["ts"].min() < start


def test_weighted_halves_per_half_life(history: pd.DataFrame) -> None:
    data = _select(history, mode="weighted", half_life=timedelta(days=2), holdout=timedelta(days=1))
    assert data.weights is not None
    weights = data.weights
    assert weights.shape == (len(data.frame),)
    assert ((weights > 0) & (weights <= 1)).all()
    # Oldest first, so the weights grow along the frame, strictly as the rows are distinct.
    assert (np.diff(weights) > 0).all()
    # Ages count from the newest labelled row, a day before AS_OF.
    age = data.frame["ts"].max() - data.frame["ts"]
    at = dict(zip(age, weights, strict=True))
    assert at[pd.Timedelta(0)] == 1.0
    assert at[pd.Timedelta(days=2)] == pytest.approx(0.5)
    assert at[pd.Timedelta(days=4)] == pytest.approx(0.25)
    assert at[pd.Timedelta(days=1)] == pytest.approx(2**-0.5)
    # Weighted mode learns from all history, like mode 'all'.
    assert len(data.frame) == len(_select(history, mode="all", holdout=timedelta(days=1)).frame)


def test_too_few_rows_is_a_training_error(history: pd.DataFrame) -> None:
    kept = ARRIVED - len(LATE) - len(NEVER) - len(NO_TARGET)
    with pytest.raises(TrainingError, match=rf"Only {kept} labelled rows") as info:
        _select(history, mode="all", holdout=timedelta(days=1), min_rows=kept + 1)
    assert info.value.context["rows"] == kept
    assert "data.min_rows" in str(info.value)
    # Exactly min_rows is enough.
    assert len(_select(history, mode="all", holdout=timedelta(days=1), min_rows=kept).frame) == kept


def test_every_row_in_the_holdout_is_a_training_error(history: pd.DataFrame) -> None:
    with pytest.raises(TrainingError, match=r"Every labelled row is in the last 2w"):
        _select(history, mode="all", holdout=timedelta(days=14))


def test_a_missing_column_is_named(history: pd.DataFrame) -> None:
    with pytest.raises(InvalidParameterError, match="label_time"):
        _select(history.drop(columns="label_time"), mode="all")


# --- retrain and judge -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic() -> pd.DataFrame:
    return _synthetic()


def _data(frame: pd.DataFrame) -> TrainingSet:
    return training_set(
        frame,
        as_of=START + timedelta(days=62),
        timestamp="ts",
        label_time="label_time",
        target="y",
        policy=DataPolicy(mode="all", holdout=timedelta(days=10), min_rows=1_000),
    )


@pytest.fixture(scope="module")
def data(synthetic: pd.DataFrame) -> TrainingSet:
    return _data(synthetic)


@pytest.fixture(scope="module")
def result(data: TrainingSet) -> TrainResult:
    return retrain(SPEC, data, numeric=NUMERIC, categorical=CATEGORICAL)


@pytest.fixture(scope="module")
def bad_champion(synthetic: pd.DataFrame) -> TrainResult:
    """A model of shuffled labels: it learned nothing about the target."""
    shuffled = synthetic.copy()
    shuffled["y"] = np.random.default_rng(5).permutation(shuffled["y"].to_numpy())
    return retrain(SPEC, _data(shuffled), numeric=NUMERIC, categorical=CATEGORICAL)


def test_the_holdout_is_the_test_slice(data: TrainingSet, result: TrainResult) -> None:
    expected = np.flatnonzero((data.frame["ts"] >= data.holdout_from).to_numpy())
    assert 0 < len(expected) < len(data.frame)
    np.testing.assert_array_equal(np.sort(result.test_index), expected)
    np.testing.assert_array_equal(result.test_labels, data.frame["y"].to_numpy()[result.test_index])
    assert result.split["rows"]["test"] == len(expected)
    # The recipe's rounds came through: 30 trees at most.
    assert result.params["num_boost_round"] == 30
    assert result.metrics["test"]["roc_auc"] > 0.75


def test_judge_without_a_champion_passes(data: TrainingSet, result: TrainResult) -> None:
    decision = judge(SPEC, data, result, champion=None, challenger_version=1, champion_version=None)
    assert decision.passed
    assert decision.champion is None
    assert decision.n == len(result.test_index)
    assert any("no champion yet" in reason for reason in decision.reasons)


def test_judge_passes_over_a_bad_champion_and_fails_a_high_margin(
    data: TrainingSet, result: TrainResult, bad_champion: TrainResult
) -> None:
    decision = judge(
        SPEC, data, result, champion=bad_champion.model, challenger_version=2, champion_version=1
    )
    assert decision.passed, decision.reasons
    assert (decision.challenger, decision.champion) == (2, 1)
    assert decision.delta is not None
    assert decision.ci_low is not None
    assert decision.ci_low > 0
    assert decision.n == len(result.test_index)

    strict = SPEC.model_copy(update={"gate": GatePolicy(margin=0.5)})
    refused = judge(
        strict, data, result, champion=bad_champion.model, challenger_version=2, champion_version=1
    )
    assert not refused.passed
    assert refused.delta == pytest.approx(decision.delta)
    assert any("does not clear the margin +0.5000" in reason for reason in refused.reasons)


def test_retrain_passes_the_weights_on(synthetic: pd.DataFrame, result: TrainResult) -> None:
    weighted = training_set(
        synthetic,
        as_of=START + timedelta(days=62),
        timestamp="ts",
        label_time="label_time",
        target="y",
        policy=DataPolicy(
            mode="weighted", half_life=timedelta(days=3), holdout=timedelta(days=10), min_rows=1_000
        ),
    )
    assert weighted.weights is not None
    out = retrain(SPEC, weighted, numeric=NUMERIC, categorical=CATEGORICAL)
    # Same rows, same test slice; only the training rows' weights differ.
    np.testing.assert_array_equal(out.test_index, result.test_index)
    assert not np.allclose(out.test_scores, result.test_scores)


# --- train_model's sample_weight -----------------------------------------------------------


def _train(frame: pd.DataFrame, weights: Any = None) -> TrainResult:
    return train_model(
        frame,
        task="binary",
        target="y",
        features_numeric=NUMERIC,
        features_categorical=CATEGORICAL,
        timestamp="ts",
        recipe=SPEC.model,
        primary_metric="pr_auc",
        sample_weight=weights,
    )


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda n: np.ones(n - 1), "shape"),
        (lambda n: np.ones((n, 1)), "shape"),
        (lambda n: np.r_[np.ones(n - 1), -1.0], "negative"),
        (lambda n: np.r_[np.ones(n - 1), np.nan], "NaN"),
        (lambda n: np.zeros(n), "all zeros"),
        (lambda n: ["a"] * n, "finite"),
    ],
    ids=["short", "2-d", "negative", "nan", "all-zero", "text"],
)
def test_bad_sample_weights_are_refused(synthetic: pd.DataFrame, make: Any, words: str) -> None:
    with pytest.raises(InvalidParameterError) as info:
        _train(synthetic, make(len(synthetic)))
    assert info.value.parameter == "sample_weight"
    assert "'sample_weight'" in str(info.value)
    assert words in str(info.value)


def test_sample_weights_change_the_model(synthetic: pd.DataFrame) -> None:
    plain = _train(synthetic)
    # Every other row weighs nothing: the model learns from half the training rows.
    halved = np.tile([1.0, 0.0], len(synthetic) // 2)
    weighted = _train(synthetic, halved)
    np.testing.assert_array_equal(weighted.test_index, plain.test_index)
    assert not np.allclose(weighted.test_scores, plain.test_scores)
    # Weights of 1 learn what no weights learn.
    uniform = _train(synthetic, np.ones(len(synthetic)))
    np.testing.assert_allclose(uniform.test_scores, plain.test_scores)


# --- compare_live ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, 2_000).astype(np.float64)
    good = np.clip(0.3 * y + rng.uniform(0, 0.7, y.size), 0, 1)
    return y, good


def test_reversed_scores_are_a_regression(live: tuple[np.ndarray, np.ndarray]) -> None:
    y, good = live
    comparison = compare_live(y, good, 1.0 - good, metric="roc_auc")
    assert comparison.n == y.size
    assert comparison.delta < 0
    assert comparison.low <= comparison.delta <= comparison.high < 0
    assert comparison.regressed(0.0)
    # A max_drop larger than the whole loss forgives it.
    assert not comparison.regressed(abs(comparison.delta) + 0.01)
    assert comparison.to_dict() == {
        "delta": comparison.delta,
        "low": comparison.low,
        "high": comparison.high,
        "labels": y.size,
    }


def test_identical_scores_are_no_regression(live: tuple[np.ndarray, np.ndarray]) -> None:
    y, good = live
    comparison = compare_live(y, good, good.copy(), metric="pr_auc")
    assert comparison.delta == 0.0
    assert comparison.low == comparison.high == 0.0
    assert not comparison.regressed(0.0)


def test_a_better_candidate_is_no_regression(live: tuple[np.ndarray, np.ndarray]) -> None:
    y, good = live
    comparison = compare_live(y, 1.0 - good, good, metric="roc_auc")
    assert comparison.delta > 0
    assert not comparison.regressed(0.0)
