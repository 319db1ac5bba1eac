"""The retrain triggers, one small class each, and the guard that can hold them back.

Every trigger reads the same ``Look`` (what the loop sees at one moment) and
returns a ``Trip`` naming its numbers, or None. The ``Guard`` then says whether a
trip may start a retrain now: not during the cooldown after the last one, and
not past the budget of the period.

>>> from datetime import UTC, datetime, timedelta
>>> now = datetime(2013, 5, 1, tzinfo=UTC)
>>> look = Look(now=now, realized=0.41, labelled=900, expected=0.50,
...             last_retrain=now - timedelta(days=20), labels_since=30_000)
>>> MetricTrigger(source="realized", max_drop=0.05).check(look).reason
'realized pr_auc 0.4100 on 900 labels is worse than 0.4500 (test 0.5000 - max_drop 0.05)'
>>> print(Schedule(every=timedelta(days=30)).check(look))
None
>>> NewLabels(count=20_000).check(look).value
30000.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Protocol

from setpoint.config.durations import format_duration
from setpoint.config.policy import AutopilotPolicy
from setpoint.config.spec import ProjectSpec
from setpoint.errors import InvalidParameterError
from setpoint.monitor.results import WindowResult
from setpoint.stats.drift import DriftReport

__all__ = [
    "DriftTrigger",
    "Guard",
    "Look",
    "MetricTrigger",
    "NewLabels",
    "RetrainRecord",
    "Schedule",
    "Trigger",
    "Trip",
    "build_triggers",
]


@dataclass(frozen=True, slots=True)
class Look:
    """What the loop sees at ``now``: the latest window of traffic and its own history.

    ``realized`` and ``estimated`` are the champion's metric on the window (with
    ``labelled`` labelled rows behind the realized one); ``expected`` is its
    test result at training. ``last_retrain`` is when the champion's line was
    last retrained (or trained), ``labels_since`` the labels that arrived since.
    """

    now: datetime
    metric: str = "pr_auc"
    higher_is_better: bool = True
    drift: DriftReport | None = None
    importances: Mapping[str, float] = field(default_factory=dict)
    realized: float | None = None
    labelled: int = 0
    estimated: float | None = None
    expected: float | None = None
    last_retrain: datetime | None = None
    labels_since: int = 0

    @classmethod
    def of_window(
        cls,
        window: WindowResult | None,
        *,
        now: datetime,
        metric: str,
        higher_is_better: bool,
        importances: Mapping[str, float],
        expected: float | None,
        last_retrain: datetime | None,
        labels_since: int,
    ) -> Look:
        """What the triggers read of one assessed window (``monitor.assess``) at ``now``."""
        drift = realized = estimated = None
        labelled = 0
        if window is not None:
            drift, labelled = window.drift, window.n_labelled
            if window.realized is not None and metric in window.realized.metrics:
                realized = window.realized.metrics[metric].value
            if window.estimate is not None and metric in window.estimate.metrics:
                estimated = window.estimate.metrics[metric].value
        return cls(
            now=now,
            metric=metric,
            higher_is_better=higher_is_better,
            drift=drift,
            importances=dict(importances),
            realized=realized,
            labelled=labelled,
            estimated=estimated,
            expected=expected,
            last_retrain=last_retrain,
            labels_since=labels_since,
        )


@dataclass(frozen=True, slots=True)
class Trip:
    """A trigger that fired: which, its value against its threshold, and why in words."""

    trigger: str
    value: float
    threshold: float
    reason: str


class Trigger(Protocol):
    @property
    def name(self) -> str: ...

    def check(self, look: Look) -> Trip | None: ...


class DriftTrigger:
    """Fires when the importance-weighted share of drifted top features reaches ``share``.

    ``check`` reads the window's drift report (every feature, as the monitor
    shows it) and weighs only the ``features`` most important ones, so the
    share is theirs alone.
    """

    name = "drift"

    def __init__(self, *, features: int = 5, share: float = 0.4) -> None:
        self.features = features
        self.share = share

    def top_share(
        self, report: DriftReport, importances: Mapping[str, float]
    ) -> tuple[float, list[str]]:
        """The share of the top features' weight that drifted, and their names."""
        known = [f.name for f in report.features if f.name in importances]
        top = sorted(known, key=lambda name: (-float(importances[name]), name))[: self.features]
        weights = {name: max(float(importances[name]), 1e-12) for name in top}
        # Summed in the report's (the reference's) order, as the drift report sums its
        # share, so that the same window gives the same share to the last bit.
        total = float(sum(weights.get(f.name, 0.0) for f in report.features))
        drifted = [f.name for f in report.features if f.name in weights and f.drifted]
        share = float(sum(weights[name] / total for name in drifted))
        return share, drifted

    def check(self, look: Look) -> Trip | None:
        report = look.drift
        if report is None or not look.importances:
            return None
        share, names = self.top_share(report, look.importances)
        # A hair of tolerance, as in the drift report's own decision.
        if share < self.share - 1e-12:
            return None
        return Trip(
            self.name,
            share,
            self.share,
            f"drift share {share:.2f} of the top {self.features} features "
            f"reaches {self.share:.2f} ({', '.join(names)})",
        )


class MetricTrigger:
    """Fires when the ``realized`` or ``estimated`` metric is worse than its level.

    The level is ``level``, or the model's test result less ``max_drop`` (plus,
    for a loss), whichever is stricter when both are given.
    """

    def __init__(
        self,
        *,
        source: Literal["realized", "estimated"],
        level: float | None = None,
        max_drop: float | None = None,
        baseline: Literal["test", "estimated"] = "test",
        min_labels: int = 500,
    ) -> None:
        if level is None and max_drop is None:
            raise InvalidParameterError(
                owner="MetricTrigger",
                parameter="level",
                expected="a level, or a max_drop",
                got=None,
            )
        self.source = source
        self.level = level
        self.max_drop = max_drop
        self.baseline = baseline
        self.min_labels = min_labels

    @property
    def name(self) -> str:
        return self.source

    @property
    def needs_estimate(self) -> bool:
        return self.source == "estimated" or (
            self.max_drop is not None and self.baseline == "estimated"
        )

    def check(self, look: Look) -> Trip | None:
        value = look.realized if self.source == "realized" else look.estimated
        if value is None or (self.source == "realized" and look.labelled < self.min_labels):
            return None
        sign = 1.0 if look.higher_is_better else -1.0
        levels: list[tuple[float, str]] = []
        if self.level is not None:
            levels.append((self.level, "the level"))
        base = look.estimated if self.baseline == "estimated" else look.expected
        if self.max_drop is not None and base is not None:
            levels.append(
                (
                    base - sign * self.max_drop,
                    f"{'estimate' if self.baseline == 'estimated' else 'test'} {base:.4f} "
                    f"{'-' if sign > 0 else '+'} max_drop {self.max_drop:g}",
                )
            )
        if not levels:
            return None
        # The strictest level is the one a healthy model is furthest inside.
        threshold, why = max(levels, key=lambda item: sign * item[0])
        if sign * value >= sign * threshold:
            return None
        on = f" on {look.labelled} labels" if self.source == "realized" else ""
        return Trip(
            self.name,
            value,
            threshold,
            f"{self.source} {look.metric} {value:.4f}{on} is worse than {threshold:.4f} ({why})",
        )


class Schedule:
    """Fires once ``every`` has passed since the last retrain."""

    name = "schedule"

    def __init__(self, *, every: timedelta) -> None:
        self.every = every

    def check(self, look: Look) -> Trip | None:
        if look.last_retrain is None:
            return None
        age = look.now - look.last_retrain
        if age < self.every:
            return None
        days = age.total_seconds() / 86_400
        return Trip(
            self.name,
            days,
            self.every.total_seconds() / 86_400,
            f"{days:.1f} days since the last retrain (every {format_duration(self.every)})",
        )


class NewLabels:
    """Fires once ``count`` labels have arrived since the last retrain."""

    name = "new_labels"

    def __init__(self, *, count: int) -> None:
        self.count = count

    def check(self, look: Look) -> Trip | None:
        if look.labels_since < self.count:
            return None
        return Trip(
            self.name,
            float(look.labels_since),
            float(self.count),
            f"{look.labels_since} new labels since the last retrain (at least {self.count})",
        )


def build_triggers(spec: ProjectSpec, policy: AutopilotPolicy) -> list[Trigger]:
    """The triggers the policy turns on, in a fixed order."""
    found: list[Trigger] = []
    given = policy.triggers
    if given.drift is not None:
        found.append(DriftTrigger(features=given.drift.features, share=given.drift.share))
    for source in ("realized", "estimated"):
        metric = getattr(given, source)
        if metric is not None:
            level = metric.level
            if level is None and metric.max_drop is None:
                level = spec.monitoring.setpoint
            found.append(
                MetricTrigger(
                    source=source,
                    level=level,
                    max_drop=metric.max_drop,
                    baseline=metric.baseline,
                    min_labels=metric.min_labels,
                )
            )
    if given.schedule is not None:
        found.append(Schedule(every=given.schedule))
    if given.new_labels is not None:
        found.append(NewLabels(count=given.new_labels))
    return found


@dataclass(frozen=True, slots=True)
class RetrainRecord:
    """One past retrain, as the guard counts it."""

    started_at: datetime
    train_seconds: float = 0.0


@dataclass
class Guard:
    """Holds a trip back during the cooldown or past the period's budget."""

    policy: AutopilotPolicy
    history: Sequence[RetrainRecord] = field(default_factory=tuple)

    def blocked(self, now: datetime) -> str | None:
        """Why a retrain may not start at ``now``, or None if it may."""
        if self.history:
            last = max(record.started_at for record in self.history)
            if now - last < self.policy.cooldown:
                ready = last + self.policy.cooldown
                return (
                    f"cooldown: the last retrain started {last:%Y-%m-%d %H:%M}, "
                    f"the next may start {ready:%Y-%m-%d %H:%M}"
                )
        budget = self.policy.budget
        recent = [r for r in self.history if now - r.started_at < budget.period]
        period = format_duration(budget.period)
        if len(recent) >= budget.max_retrains:
            return (
                f"budget: {len(recent)} retrains in the last {period} "
                f"(at most {budget.max_retrains})"
            )
        spent = sum(r.train_seconds for r in recent)
        if budget.max_train_seconds is not None and spent >= budget.max_train_seconds:
            return (
                f"budget: {spent:.0f} s of training in the last {period} "
                f"(at most {budget.max_train_seconds:g} s)"
            )
        return None
