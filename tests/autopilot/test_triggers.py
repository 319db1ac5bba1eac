"""The retrain triggers and the guard: each fires on data made to trip it and stays quiet otherwise.

The drift cases run the real ``detect_drift`` on seeded synthetic windows; the
metric, schedule and label triggers read hand-made ``Look`` values placed on
either side of their thresholds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from setpoint.autopilot.triggers import (
    DriftTrigger,
    Guard,
    Look,
    MetricTrigger,
    NewLabels,
    RetrainRecord,
    Schedule,
    build_triggers,
)
from setpoint.config.policy import AutopilotPolicy
from setpoint.config.spec import MonitoringSpec
from setpoint.errors import InvalidParameterError
from setpoint.quickstart.build import quickstart_spec
from setpoint.stats.drift import DriftReport, detect_drift
from setpoint.stats.reference import Reference

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
FEATURES = ["a", "b", "c", "d", "e", "f"]
# Largest first, as ``TabularModel.feature_importance`` returns them: a, b, c are the top 3.
IMPORTANCES = {"a": 50.0, "b": 30.0, "c": 20.0, "d": 5.0, "e": 3.0, "f": 1.0}


# --- drift -----------------------------------------------------------------------------


def _window(seed: int, rows: int = 5_000, shifted: tuple[str, ...] = ()) -> pd.DataFrame:
    """Standard normal features; each ``shifted`` one moved by a whole standard deviation."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.normal(0.0, 1.0, rows) for name in FEATURES})
    for name in shifted:
        frame[name] += 1.0
    return frame


@pytest.fixture(scope="module")
def reference() -> Reference:
    return Reference.build(_window(0), numeric=FEATURES, categorical=[])


def _report(reference: Reference, shifted: tuple[str, ...]) -> DriftReport:
    """The window's drift as the monitor reports it: every feature, weighed by importance."""
    return detect_drift(reference, _window(1, shifted=shifted), importances=IMPORTANCES)


@pytest.mark.parametrize("shifted", [("a", "b"), ("a", "b", "c")])
def test_drift_fires_when_top_features_shift(
    reference: Reference, shifted: tuple[str, ...]
) -> None:
    trigger = DriftTrigger(features=3, share=0.5)
    report = _report(reference, shifted)
    assert set(report.drifted_features) == set(shifted)
    trip = trigger.check(Look(now=NOW, drift=report, importances=IMPORTANCES))
    assert trip is not None
    assert trip.trigger == "drift"
    assert trip.threshold == 0.5
    # The share is over the top 3 only: a's and b's weights are 50 and 30 of 100.
    expected = sum(IMPORTANCES[name] for name in shifted) / 100.0
    assert trip.value == pytest.approx(expected)
    assert trip.value >= trigger.share
    for name in shifted:
        assert name in trip.reason
    assert "top 3 features" in trip.reason


@pytest.mark.parametrize(
    "shifted",
    [(), ("f",), ("d", "e", "f")],
    ids=["unshifted", "unimportant-f", "outside-the-top"],
)
def test_drift_stays_quiet_off_the_top_features(
    reference: Reference, shifted: tuple[str, ...]
) -> None:
    trigger = DriftTrigger(features=3, share=0.5)
    report = _report(reference, shifted)
    # The shifted features are found drifting, but they weigh nothing in the top share.
    assert set(report.drifted_features) == set(shifted)
    assert trigger.top_share(report, IMPORTANCES) == (0.0, [])
    assert trigger.check(Look(now=NOW, drift=report, importances=IMPORTANCES)) is None


def test_drift_below_the_share_is_quiet(reference: Reference) -> None:
    # c alone is 20% of the top-3 importance; the trigger asks for 40%.
    trigger = DriftTrigger(features=3, share=0.4)
    report = _report(reference, ("c",))
    assert report.drifted_features == ("c",)
    assert trigger.top_share(report, IMPORTANCES)[0] == pytest.approx(0.2)
    assert trigger.check(Look(now=NOW, drift=report, importances=IMPORTANCES)) is None


def test_drift_without_a_report_or_importances_is_quiet(reference: Reference) -> None:
    assert DriftTrigger().check(Look(now=NOW)) is None
    report = _report(reference, ("a", "b"))
    assert DriftTrigger(features=3, share=0.5).check(Look(now=NOW, drift=report)) is None


def test_drift_top_features_do_not_depend_on_mapping_order(reference: Reference) -> None:
    smallest_first = dict(sorted(IMPORTANCES.items(), key=lambda item: item[1]))
    trigger = DriftTrigger(features=3, share=0.5)
    report = _report(reference, ("a", "b"))
    assert trigger.top_share(report, smallest_first) == trigger.top_share(report, IMPORTANCES)
    assert trigger.check(Look(now=NOW, drift=report, importances=smallest_first)) is not None


# --- realized and estimated metrics ------------------------------------------------------


def _look(**values: Any) -> Look:
    return Look(now=NOW, **values)


def test_realized_level_fires_below_it_with_enough_labels() -> None:
    trigger = MetricTrigger(source="realized", level=0.45, min_labels=500)
    trip = trigger.check(_look(realized=0.40, labelled=500))
    assert trip is not None
    assert (trip.trigger, trip.value, trip.threshold) == ("realized", 0.40, 0.45)
    assert "500 labels" in trip.reason
    assert "the level" in trip.reason


def test_realized_level_is_quiet_on_few_labels_or_above_it() -> None:
    trigger = MetricTrigger(source="realized", level=0.45, min_labels=500)
    assert trigger.check(_look(realized=0.40, labelled=499)) is None
    assert trigger.check(_look(realized=0.46, labelled=5_000)) is None
    assert trigger.check(_look(realized=0.45, labelled=5_000)) is None  # at the level: not worse
    assert trigger.check(_look(realized=None, labelled=5_000)) is None


def test_max_drop_from_the_test_result() -> None:
    trigger = MetricTrigger(source="realized", max_drop=0.05, min_labels=100)
    # The test result is 0.50, so the level is 0.45; the estimate is not the baseline.
    trip = trigger.check(_look(realized=0.44, labelled=200, expected=0.50, estimated=0.44))
    assert trip is not None
    assert trip.threshold == pytest.approx(0.45)
    assert "test 0.5000" in trip.reason
    assert trigger.check(_look(realized=0.46, labelled=200, expected=0.50)) is None
    # Without a test result there is nothing to drop from.
    assert trigger.check(_look(realized=0.10, labelled=200, expected=None)) is None


def test_max_drop_from_the_estimate_ignores_the_test_result() -> None:
    trigger = MetricTrigger(source="realized", max_drop=0.05, baseline="estimated", min_labels=100)
    assert trigger.needs_estimate
    # Far under the test result, but the scores promised as little: the world did not
    # stop matching the model, so this is quiet.
    assert trigger.check(_look(realized=0.30, labelled=200, expected=0.60, estimated=0.32)) is None
    # The estimate promised much more than the labels deliver: it fires.
    trip = trigger.check(_look(realized=0.30, labelled=200, expected=0.31, estimated=0.40))
    assert trip is not None
    assert trip.threshold == pytest.approx(0.35)
    assert "estimate 0.4000" in trip.reason
    # Against the test baseline, the first look's numbers fire.
    on_test = MetricTrigger(source="realized", max_drop=0.05, min_labels=100)
    assert not on_test.needs_estimate
    fired = on_test.check(_look(realized=0.30, labelled=200, expected=0.60, estimated=0.32))
    assert fired is not None


def test_lower_is_better_fires_above_the_level() -> None:
    trigger = MetricTrigger(source="realized", level=0.40, min_labels=10)
    loss = {"metric": "log_loss", "higher_is_better": False, "labelled": 100}
    trip = trigger.check(_look(realized=0.45, **loss))
    assert trip is not None
    assert trip.threshold == 0.40
    assert "log_loss" in trip.reason
    assert trigger.check(_look(realized=0.35, **loss)) is None


def test_lower_is_better_max_drop_adds_to_the_test_result() -> None:
    trigger = MetricTrigger(source="realized", max_drop=0.05, min_labels=10)
    loss = {"metric": "log_loss", "higher_is_better": False, "labelled": 100, "expected": 0.30}
    trip = trigger.check(_look(realized=0.36, **loss))
    assert trip is not None
    assert trip.threshold == pytest.approx(0.35)
    assert "+ max_drop" in trip.reason
    assert trigger.check(_look(realized=0.34, **loss)) is None


@pytest.mark.parametrize(
    ("level", "threshold", "why"),
    [(0.45, 0.45, "the level"), (0.35, 0.40, "test 0.5000 - max_drop 0.1")],
    ids=["level-stricter", "max-drop-stricter"],
)
def test_the_strictest_of_level_and_max_drop_wins(level: float, threshold: float, why: str) -> None:
    trigger = MetricTrigger(source="realized", level=level, max_drop=0.10, min_labels=10)
    look = {"labelled": 100, "expected": 0.50}
    trip = trigger.check(_look(realized=threshold - 0.01, **look))
    assert trip is not None
    assert trip.threshold == pytest.approx(threshold)
    assert why in trip.reason
    assert trigger.check(_look(realized=threshold + 0.01, **look)) is None


def test_the_strictest_level_for_a_loss_is_the_lowest() -> None:
    trigger = MetricTrigger(source="realized", level=0.50, max_drop=0.05, min_labels=10)
    loss = {"metric": "log_loss", "higher_is_better": False, "labelled": 100, "expected": 0.30}
    # 0.35 (test + max_drop) is stricter than the level 0.50 for a loss.
    trip = trigger.check(_look(realized=0.40, **loss))
    assert trip is not None
    assert trip.threshold == pytest.approx(0.35)


def test_a_metric_trigger_needs_a_level_or_a_max_drop() -> None:
    with pytest.raises(InvalidParameterError) as info:
        MetricTrigger(source="realized")
    assert info.value.parameter == "level"
    assert "max_drop" in str(info.value)


def test_estimated_source_reads_the_estimate_whatever_the_labels() -> None:
    trigger = MetricTrigger(source="estimated", level=0.45, min_labels=500)
    assert trigger.needs_estimate
    trip = trigger.check(_look(estimated=0.40, labelled=0, realized=0.90))
    assert trip is not None
    assert (trip.trigger, trip.value) == ("estimated", 0.40)
    assert "labels" not in trip.reason
    assert trigger.check(_look(estimated=0.50, labelled=0, realized=0.10)) is None
    assert trigger.check(_look(estimated=None, realized=0.10, labelled=10_000)) is None


# --- schedule and new labels ----------------------------------------------------------------


def test_schedule_fires_once_every_has_passed() -> None:
    trigger = Schedule(every=timedelta(days=30))
    just_before = NOW - timedelta(days=30) + timedelta(seconds=1)
    assert trigger.check(_look(last_retrain=just_before)) is None
    at = trigger.check(_look(last_retrain=NOW - timedelta(days=30)))
    assert at is not None
    assert (at.value, at.threshold) == (30.0, 30.0)
    later = trigger.check(_look(last_retrain=NOW - timedelta(days=45)))
    assert later is not None
    assert later.value == pytest.approx(45.0)
    assert "every 30d" in later.reason


def test_schedule_without_a_last_retrain_is_quiet() -> None:
    assert Schedule(every=timedelta(hours=1)).check(_look(last_retrain=None)) is None


def test_new_labels_fire_at_the_count() -> None:
    trigger = NewLabels(count=1_000)
    assert trigger.check(_look(labels_since=999)) is None
    trip = trigger.check(_look(labels_since=1_000))
    assert trip is not None
    assert (trip.trigger, trip.value, trip.threshold) == ("new_labels", 1_000.0, 1_000.0)


# --- the guard ------------------------------------------------------------------------------


def _policy(**values: Any) -> AutopilotPolicy:
    return AutopilotPolicy.model_validate({"triggers": {"schedule": "30d"}, **values})


def test_guard_allows_without_history() -> None:
    assert Guard(_policy()).blocked(NOW) is None


def test_cooldown_blocks_and_names_the_next_start() -> None:
    guard = Guard(
        _policy(cooldown="2d"),
        history=[
            RetrainRecord(NOW - timedelta(days=20)),
            RetrainRecord(NOW - timedelta(hours=30)),
        ],
    )
    reason = guard.blocked(NOW)
    assert reason is not None
    assert reason.startswith("cooldown")
    last, ready = NOW - timedelta(hours=30), NOW + timedelta(hours=18)
    assert f"{last:%Y-%m-%d %H:%M}" in reason
    assert f"the next may start {ready:%Y-%m-%d %H:%M}" in reason
    # Once the cooldown has passed, it no longer blocks.
    assert guard.blocked(NOW + timedelta(hours=18)) is None


def test_budget_blocks_at_max_retrains_within_the_period() -> None:
    policy = _policy(cooldown="1h", budget={"max_retrains": 2, "period": "10d"})
    two = [RetrainRecord(NOW - timedelta(days=d)) for d in (1, 5)]
    reason = Guard(policy, history=two).blocked(NOW)
    assert reason is not None
    assert reason.startswith("budget")
    assert "2 retrains in the last 10d" in reason
    assert "at most 2" in reason
    # One fewer is allowed.
    assert Guard(policy, history=two[:1]).blocked(NOW) is None


def test_budget_ignores_records_older_than_the_period() -> None:
    policy = _policy(cooldown="1h", budget={"max_retrains": 2, "period": "10d"})
    old = [RetrainRecord(NOW - timedelta(days=d)) for d in (10, 12, 40)]
    assert (
        Guard(policy, history=[*old, RetrainRecord(NOW - timedelta(days=1))]).blocked(NOW) is None
    )


def test_budget_blocks_at_max_train_seconds() -> None:
    policy = _policy(
        cooldown="1h", budget={"max_retrains": 10, "period": "10d", "max_train_seconds": 600}
    )
    spent = [
        RetrainRecord(NOW - timedelta(days=2), train_seconds=400.0),
        RetrainRecord(NOW - timedelta(days=3), train_seconds=200.0),
    ]
    reason = Guard(policy, history=spent).blocked(NOW)
    assert reason is not None
    assert "600 s of training in the last 10d" in reason
    under = [spent[0], RetrainRecord(NOW - timedelta(days=3), train_seconds=199.0)]
    assert Guard(policy, history=under).blocked(NOW) is None
    # Time spent before the period does not count.
    older = [spent[0], RetrainRecord(NOW - timedelta(days=11), train_seconds=10_000.0)]
    assert Guard(policy, history=older).blocked(NOW) is None


# --- build_triggers -------------------------------------------------------------------------


def test_build_triggers_in_order() -> None:
    policy = AutopilotPolicy.model_validate(
        {
            "triggers": {
                "new_labels": 5_000,
                "schedule": "2w",
                "estimated": {"level": 0.3},
                "realized": {"max_drop": 0.05, "baseline": "estimated", "min_labels": 50},
                "drift": {"features": 4, "share": 0.25},
            }
        }
    )
    spec = quickstart_spec().model_copy(update={"autopilot": policy})
    found = build_triggers(spec, policy)
    assert [type(t) for t in found] == [
        DriftTrigger,
        MetricTrigger,
        MetricTrigger,
        Schedule,
        NewLabels,
    ]
    assert [t.name for t in found] == ["drift", "realized", "estimated", "schedule", "new_labels"]
    drift, realized, estimated, schedule, labels = found
    assert isinstance(drift, DriftTrigger)
    assert (drift.features, drift.share) == (4, 0.25)
    assert isinstance(realized, MetricTrigger)
    assert (realized.level, realized.max_drop, realized.baseline, realized.min_labels) == (
        None,
        0.05,
        "estimated",
        50,
    )
    assert isinstance(estimated, MetricTrigger)
    assert (estimated.level, estimated.max_drop) == (0.3, None)
    assert isinstance(schedule, Schedule)
    assert schedule.every == timedelta(weeks=2)
    assert isinstance(labels, NewLabels)
    assert labels.count == 5_000


def test_build_triggers_only_what_is_set() -> None:
    policy = AutopilotPolicy.model_validate({"triggers": {"schedule": "7d"}})
    spec = quickstart_spec().model_copy(update={"autopilot": policy})
    found = build_triggers(spec, policy)
    assert len(found) == 1
    assert isinstance(found[0], Schedule)


def test_a_realized_trigger_without_level_or_max_drop_takes_the_setpoint() -> None:
    policy = AutopilotPolicy.model_validate({"triggers": {"realized": {"min_labels": 100}}})
    base = quickstart_spec()
    spec = base.model_copy(
        update={"autopilot": policy, "monitoring": MonitoringSpec(setpoint=0.42)}
    )
    [trigger] = build_triggers(spec, policy)
    assert isinstance(trigger, MetricTrigger)
    assert (trigger.level, trigger.max_drop) == (0.42, None)
    assert trigger.check(_look(realized=0.41, labelled=100)) is not None
    assert trigger.check(_look(realized=0.43, labelled=100)) is None
    # A max_drop alone keeps the level unset: the setpoint is only a fallback.
    drop = AutopilotPolicy.model_validate({"triggers": {"realized": {"max_drop": 0.1}}})
    [trigger] = build_triggers(spec.model_copy(update={"autopilot": drop}), drop)
    assert isinstance(trigger, MetricTrigger)
    assert (trigger.level, trigger.max_drop) == (None, 0.1)
