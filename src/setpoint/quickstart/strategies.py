"""``setpoint simulate``: a year of traffic replayed on a simulated clock, three ways.

Every strategy starts from the same model, trained on what was labelled before
``start``, and serves the same flights day by day:

- **static** keeps that model;
- **weekly** retrains every seven days and ships the result, whatever happens;
- **autopilot** looks once a day as the live loop does (``retrain.py`` and
  ``triggers.py``, the very code ``setpoint autopilot`` runs): triggers, the
  cooldown and budget, a retrain on the data the policy names, the gate on the
  most recent labelled days, a shadow period, the promotion, then a watch with
  the old champion scoring beside the new one, and a rollback if it regresses.

A flight's label exists only from ``label_delay`` after its departure, so no
strategy ever learns from an outcome that had not happened yet. Every
strategy is scored on each week it served; nothing waits in real time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from setpoint.autopilot.retrain import (
    Comparison,
    TrainingSet,
    compare_live,
    judge,
    retrain,
    training_set,
)
from setpoint.autopilot.triggers import DriftTrigger, Guard, Look, RetrainRecord, build_triggers
from setpoint.config.policy import AutopilotPolicy
from setpoint.config.spec import ProjectSpec
from setpoint.errors import InvalidParameterError, TrainingError
from setpoint.stats.cbpe import estimate_performance
from setpoint.stats.reference import Reference
from setpoint.train.metrics import metric_function
from setpoint.train.tabular_model import TabularModel
from setpoint.train.trainer import TrainResult

__all__ = ["LABEL_TIME", "STRATEGIES", "Champion", "Replay", "ReplayResult"]

STRATEGIES = ("static", "weekly", "autopilot")

LABEL_TIME = "__label_time__"
FloatArray = npt.NDArray[np.float64]
Progress = Callable[[str, float], None]


@dataclass
class Champion:
    """A model as a strategy serves it, with what the triggers compare traffic to."""

    model: TabularModel
    expected: float | None
    reference: Reference | None


@dataclass
class ReplayResult:
    """Per-week metric of each strategy, its retrains, training time and decisions."""

    metric: str
    weeks: list[dict[str, Any]]
    retrains: dict[str, int]
    train_seconds: dict[str, float]
    events: list[dict[str, Any]]
    seconds: float

    def mean(self, strategy: str) -> float:
        values = [w[strategy] for w in self.weeks if w.get(strategy) is not None]
        return float(np.mean(values)) if values else float("nan")

    def summary(self) -> dict[str, Any]:
        base, weekly, auto = (self.mean(s) for s in STRATEGIES)
        gain = weekly - base
        recovered = (auto - base) / gain if gain > 0 else float("nan")
        share = self.retrains.get("autopilot", 0) / max(self.retrains.get("weekly", 0), 1)
        return {
            "mean": {s: self.mean(s) for s in STRATEGIES},
            "weekly_gain": gain,
            "autopilot_gain": auto - base,
            "recovered": recovered,
            "retrain_share": share,
            "target_met": bool(recovered >= 0.9 and share <= 1 / 3),
        }


def _utc64(times: pd.Series) -> npt.NDArray[np.datetime64]:
    """Naive UTC datetime64 values, which numpy can search (aware ones are objects)."""
    values = pd.to_datetime(times, utc=True)
    return values.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")


@dataclass
class _Strategy:
    name: str
    champion: Champion
    scores: FloatArray
    other_scores: FloatArray
    retrains: int = 0
    train_seconds: float = 0.0
    history: list[RetrainRecord] = field(default_factory=list)
    # The autopilot's rollout: a challenger in shadow, or an old champion under watch.
    phase: str = "serving"
    other: Champion | None = None
    phase_since: datetime | None = None


class Replay:
    """Replays ``events`` from ``start`` to ``end`` under the three strategies."""

    def __init__(
        self,
        spec: ProjectSpec,
        events: pd.DataFrame,
        *,
        start: datetime,
        end: datetime,
        label_delay: timedelta = timedelta(hours=6),
        policy: AutopilotPolicy | None = None,
        numeric: list[str],
        categorical: list[str],
        num_threads: int = 0,
        strategies: tuple[str, ...] = STRATEGIES,
    ) -> None:
        self.spec = spec
        self.events = events
        self.start = start
        self.end = end
        self.label_delay = label_delay
        self.policy = policy
        self.numeric = numeric
        self.categorical = categorical
        self.num_threads = num_threads
        self.strategies = strategies

    def run(self, *, progress: Progress | None = None) -> ReplayResult:
        started = time.perf_counter()
        policy = self.policy or self.spec.autopilot
        if policy is None or self.spec.timestamp is None:
            raise InvalidParameterError(
                owner="Replay", parameter="policy", expected="an autopilot policy", got=None
            )
        self.policy_ = policy
        self.triggers_ = build_triggers(self.spec, policy)
        ts = self.spec.timestamp
        frame = self.events.sort_values(ts, kind="stable").reset_index(drop=True)
        frame[LABEL_TIME] = frame[ts] + pd.Timedelta(self.label_delay)
        self.frame_ = frame
        self.times_ = _utc64(frame[ts])
        self.label_times_ = _utc64(frame[LABEL_TIME])
        self.events_: list[dict[str, Any]] = []
        first = self._train(pd.Timestamp(self.start), mode="all")
        if first is None:
            raise TrainingError("The first model could not be trained on the data before start.")
        champion, _ = first
        strategies = {
            name: _Strategy(
                name, champion, np.full(len(frame), np.nan), np.full(len(frame), np.nan)
            )
            for name in STRATEGIES
            if name in self.strategies
        }
        for strategy in strategies.values():
            strategy.history.append(RetrainRecord(self.start, 0.0))
        days = pd.date_range(self.start, self.end, freq="D", inclusive="left")
        report = progress or (lambda stage, fraction: None)
        for i, day in enumerate(days):
            report(f"{day:%Y-%m-%d}", i / len(days))
            rows = self._rows(day, day + pd.Timedelta(days=1))
            for strategy in strategies.values():
                self._serve(strategy, rows)
            now = day + pd.Timedelta(days=1)
            if (i + 1) % 7 == 0 and "weekly" in strategies:
                self._weekly(strategies["weekly"], now)
            if "autopilot" in strategies:
                self._autopilot(strategies["autopilot"], now)
        report("done", 1.0)
        return ReplayResult(
            metric=self.spec.metric,
            weeks=self._weeks(strategies, days),
            retrains={s.name: s.retrains for s in strategies.values()},
            train_seconds={s.name: round(s.train_seconds, 2) for s in strategies.values()},
            events=self.events_,
            seconds=round(time.perf_counter() - started, 1),
        )

    # The three strategies -------------------------------------------------------------
    def _weekly(self, strategy: _Strategy, now: pd.Timestamp) -> None:
        trained = self._train(now)
        if trained is not None:
            strategy.champion, seconds = trained
            strategy.retrains += 1
            strategy.train_seconds += seconds

    def _autopilot(self, strategy: _Strategy, now: pd.Timestamp) -> None:
        policy = self.policy_
        if strategy.phase == "shadow":
            self._end_shadow(strategy, now)
            return
        if strategy.phase == "watch":
            self._watch(strategy, now)
            if strategy.phase == "watch":
                return
        look = self._look(strategy, now)
        trips = [trip for t in self.triggers_ if (trip := t.check(look)) is not None]
        if not trips:
            return
        blocked = Guard(policy, strategy.history).blocked(now.to_pydatetime())
        if blocked is not None:
            return
        self._event(now, "trigger", reasons=[t.reason for t in trips])
        strategy.history.append(RetrainRecord(now.to_pydatetime()))
        clock = time.perf_counter()
        built = self._fit(now)
        if built is None:
            return
        data, result = built
        decision = judge(
            self.spec,
            data,
            result,
            champion=strategy.champion.model,
            challenger_version=strategy.retrains + 2,
            champion_version=strategy.retrains + 1,
        )
        seconds = time.perf_counter() - clock
        strategy.retrains += 1
        strategy.train_seconds += seconds
        strategy.history[-1] = RetrainRecord(now.to_pydatetime(), seconds)
        self._event(now, "gate", passed=decision.passed, reasons=decision.reasons)
        if decision.passed:
            strategy.phase, strategy.phase_since = "shadow", now.to_pydatetime()
            strategy.other = self._champion(data, result)
            strategy.other_scores[:] = np.nan

    def _end_shadow(self, strategy: _Strategy, now: pd.Timestamp) -> None:
        shadow = self.policy_.shadow
        seen = np.isfinite(strategy.other_scores)
        since = strategy.phase_since or now.to_pydatetime()
        if seen.sum() < shadow.requests or now.to_pydatetime() - since < shadow.duration:
            return
        challenger = strategy.other
        if challenger is None:
            return
        compared = self._compare(strategy, now, seen, minimum=shadow.min_labels, shadow=True)
        if compared is not None and compared.regressed(shadow.max_drop):
            self._event(now, "shadow_rejected", **compared.to_dict())
            strategy.phase, strategy.other = "serving", None
            return
        self._event(now, "promote", requests=int(seen.sum()))
        strategy.champion, strategy.other = challenger, strategy.champion
        strategy.other_scores[:] = np.nan
        strategy.phase, strategy.phase_since = "watch", now.to_pydatetime()

    def _watch(self, strategy: _Strategy, now: pd.Timestamp) -> None:
        watch = self.policy_.watch
        since = strategy.phase_since or now.to_pydatetime()
        seen = np.isfinite(strategy.other_scores)
        compared = self._compare(strategy, now, seen, minimum=watch.min_labels, shadow=False)
        if compared is not None and compared.regressed(watch.max_drop) and strategy.other:
            self._event(now, "rollback", **compared.to_dict())
            strategy.champion = strategy.other
            strategy.phase, strategy.other = "serving", None
            return
        if now.to_pydatetime() - since >= watch.duration:
            strategy.phase, strategy.other = "serving", None

    def _compare(
        self,
        strategy: _Strategy,
        now: pd.Timestamp,
        rows: npt.NDArray[np.bool_],
        *,
        minimum: int,
        shadow: bool,
    ) -> Comparison | None:
        """The new model's lead over the old on ``rows`` labelled by ``now``."""
        both = rows & (self.label_times_ <= _utc64(pd.Series([now]))[0])
        labels = self.frame_[self.spec.target][both]
        if both.sum() < minimum or labels.nunique() < 2:
            return None
        y = strategy.champion.model.encode_labels(labels)
        served, other = strategy.scores[both], strategy.other_scores[both]
        # In shadow the champion serves and the challenger is new; under watch, the reverse.
        old, new = (served, other) if shadow else (other, served)
        return compare_live(y, old, new, metric=self.spec.metric)

    # Steps -------------------------------------------------------------------------
    def _rows(self, start: pd.Timestamp, end: pd.Timestamp) -> slice:
        lo, hi = np.searchsorted(self.times_, _utc64(pd.Series([start, end])))
        return slice(int(lo), int(hi))

    def _serve(self, strategy: _Strategy, rows: slice) -> None:
        if rows.stop <= rows.start:
            return
        day = self.frame_.iloc[rows]
        strategy.scores[rows] = strategy.champion.model.predict_scores(day)
        if strategy.other is not None:
            strategy.other_scores[rows] = strategy.other.model.predict_scores(day)

    def _look(self, strategy: _Strategy, now: pd.Timestamp) -> Look:
        target = self.spec.target
        window = self._rows(now - pd.Timedelta(self.policy_.window), now)
        served = np.isfinite(strategy.scores[window])
        frame = self.frame_.iloc[window][served]
        scores = strategy.scores[window][served]
        arrived = (frame[LABEL_TIME] <= now).to_numpy()
        champion = strategy.champion
        realized = estimated = None
        drift = None
        for trigger in self.triggers_:
            if isinstance(trigger, DriftTrigger) and champion.reference is not None and len(frame):
                drift = trigger.report(
                    champion.reference, frame, importances=champion.model.feature_importance()
                )
        if arrived.sum() and len(np.unique(frame[target][arrived])) > 1:
            y = champion.model.encode_labels(frame[target][arrived])
            realized = metric_function(self.spec.metric)(y, scores[arrived])
        if any(getattr(t, "needs_estimate", False) for t in self.triggers_) and len(frame):
            estimate = estimate_performance(
                scores, threshold=champion.model.threshold_value, metrics=[self.spec.metric]
            )
            estimated = estimate.metrics[self.spec.metric].value
        last = strategy.history[-1].started_at
        since = self.frame_[LABEL_TIME].between(pd.Timestamp(last), now, inclusive="right")
        return Look(
            now=now.to_pydatetime(),
            metric=self.spec.metric,
            higher_is_better=self.spec.higher_is_better,
            drift=drift,
            realized=realized,
            labelled=int(arrived.sum()),
            estimated=estimated,
            expected=champion.expected,
            last_retrain=last,
            labels_since=int(since.sum()),
        )

    def _fit(
        self, now: pd.Timestamp, *, mode: str | None = None
    ) -> tuple[TrainingSet, TrainResult] | None:
        data_policy = self.policy_.data
        if mode is not None:
            data_policy = data_policy.model_copy(update={"mode": mode})
        try:
            data = training_set(
                self.frame_.iloc[: self._rows(now, now).start],
                as_of=now.to_pydatetime(),
                timestamp=self.spec.timestamp or "",
                label_time=LABEL_TIME,
                target=self.spec.target,
                policy=data_policy,
            )
            result = retrain(
                self.spec,
                data,
                numeric=self.numeric,
                categorical=self.categorical,
                num_threads=self.num_threads,
            )
        except TrainingError as exc:
            self._event(now, "retrain_failed", error=str(exc))
            return None
        return data, result

    def _train(
        self, now: pd.Timestamp, *, mode: str | None = None
    ) -> tuple[Champion, float] | None:
        clock = time.perf_counter()
        built = self._fit(now, mode=mode)
        if built is None:
            return None
        return self._champion(*built), time.perf_counter() - clock

    def _champion(self, data: TrainingSet, result: TrainResult) -> Champion:
        test = data.frame.iloc[result.test_index]
        columns = {name: test[name].to_numpy() for name in [*self.numeric, *self.categorical]}
        reference = Reference.build(columns, numeric=self.numeric, categorical=self.categorical)
        expected = result.metrics.get("test", {}).get(self.spec.metric)
        return Champion(result.model, expected, reference)

    def _event(self, now: pd.Timestamp, kind: str, **details: Any) -> None:
        self.events_.append({"at": now.isoformat(), "kind": kind, **details})

    def _weeks(
        self, strategies: dict[str, _Strategy], days: pd.DatetimeIndex
    ) -> list[dict[str, Any]]:
        score = metric_function(self.spec.metric)
        weeks: list[dict[str, Any]] = []
        for first in days[::7]:
            rows = self._rows(first, min(first + pd.Timedelta(days=7), pd.Timestamp(self.end)))
            labels = self.frame_[self.spec.target].iloc[rows]
            if labels.nunique() < 2:
                continue
            week: dict[str, Any] = {
                "week": f"{first:%Y-%m-%d}",
                "flights": len(labels),
                "positive_share": float(labels.mean()),
            }
            y = next(iter(strategies.values())).champion.model.encode_labels(labels)
            for name, strategy in strategies.items():
                week[name] = score(y, strategy.scores[rows])
            weeks.append(week)
        return weeks
