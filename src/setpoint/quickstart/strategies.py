"""``setpoint simulate``: a year of traffic replayed on a simulated clock, three ways.

Every strategy starts from the same model, trained on what was labelled before
``start``, and serves the same flights day by day:

- **static** keeps that model;
- **weekly** retrains every seven days and ships the result, whatever happens;
- **autopilot** looks once a day as the live loop does, through the very code
  ``setpoint autopilot`` runs: the window's assessment (``monitor/assess.py``),
  the triggers with the cooldown and budget, a retrain on the data the policy
  names (the tabular kind's ``build``), the gate's ``judge`` on the most recent
  labelled days, and the rollout's state machine (``autopilot/rollout.py``): a
  shadow period, the promotion, then a watch with the old champion scoring
  beside the new one, and a rollback if it regresses.

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

from setpoint.autopilot.compare import Comparison, compare_live
from setpoint.autopilot.rollout import Evidence, Rollout, decide
from setpoint.autopilot.triggers import Guard, Look, RetrainRecord, build_triggers
from setpoint.config.policy import AutopilotPolicy
from setpoint.config.spec import ProjectSpec, Task
from setpoint.errors import InvalidParameterError, TrainingError
from setpoint.kinds.protocol import MonitoringReference
from setpoint.kinds.tabular import TABULAR
from setpoint.monitor.assess import WindowOptions, assess_window
from setpoint.monitor.windows import Window
from setpoint.registry.gate import judge
from setpoint.traffic.frames import frame_traffic
from setpoint.train.metrics import metric_function
from setpoint.train.tabular_model import TabularModel
from setpoint.train.trainer import TrainResult
from setpoint.train.training_set import TrainingSet, training_set

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
    reference: MonitoringReference


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
    # The autopilot's rollout (``autopilot/rollout.py``): a challenger in shadow, or
    # the old champion under watch, and the other model of the two.
    rollout: Rollout | None = None
    other: Champion | None = None


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
        self.options_ = WindowOptions.from_spec(self.spec, segments=False)
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
        if strategy.rollout is not None:
            stage = strategy.rollout.stage
            self._roll(strategy, now)
            # A day of shadow is all that day's work; an ended watch leaves time for a look.
            if stage == "shadow" or strategy.rollout is not None:
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
        index, evaluation = TABULAR.holdout(result)
        holdout = data.frame.iloc[index].reset_index(drop=True)
        decision = judge(
            self.spec,
            holdout=holdout,
            challenger=evaluation,
            champion=TABULAR.evaluate(strategy.champion.model, holdout, target=self.spec.target),
            challenger_version=strategy.retrains + 2,
            champion_version=strategy.retrains + 1,
        )
        seconds = time.perf_counter() - clock
        strategy.retrains += 1
        strategy.train_seconds += seconds
        strategy.history[-1] = RetrainRecord(now.to_pydatetime(), seconds)
        self._event(now, "gate", passed=decision.passed, reasons=decision.reasons)
        if decision.passed:
            strategy.rollout = Rollout.shadow(
                challenger=strategy.retrains + 1,
                champion=strategy.retrains,
                now=now.to_pydatetime(),
            )
            strategy.other = self._champion(data, result)
            strategy.other_scores[:] = np.nan

    def _roll(self, strategy: _Strategy, now: pd.Timestamp) -> None:
        """One step of the rollout's state machine, on the scores both models gave."""
        rollout, other = strategy.rollout, strategy.other
        if rollout is None or other is None:
            return
        shadow = rollout.stage == "shadow"
        seen = np.isfinite(strategy.other_scores)
        minimum = self.policy_.shadow.min_labels if shadow else self.policy_.watch.min_labels
        compared = self._compare(strategy, now, seen, minimum=minimum, shadow=shadow)
        evidence = Evidence(requests=int(seen.sum()), compared=compared)
        action = decide(rollout, now=now.to_pydatetime(), evidence=evidence, policy=self.policy_)
        numbers = {} if compared is None else compared.to_dict()
        if action == "wait":
            return
        if action == "promote":
            self._event(now, "promote", requests=evidence.requests)
            strategy.champion, strategy.other = other, strategy.champion
            strategy.other_scores[:] = np.nan
            strategy.rollout = rollout.promoted(now=now.to_pydatetime())
            return
        if action == "reject":
            self._event(now, "shadow_rejected", **numbers)
        elif action == "rollback":
            self._event(now, "rollback", **numbers)
            strategy.champion = other
        strategy.rollout, strategy.other = None, None

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
        """The champion's last ``window`` of traffic, assessed as the live loop assesses it."""
        start = now - pd.Timedelta(self.policy_.window)
        window = self._rows(start, now)
        served = np.isfinite(strategy.scores[window])
        frame = self.frame_.iloc[window][served]
        champion = strategy.champion
        result = None
        if len(frame):
            arrived = (frame[LABEL_TIME] <= now).to_numpy()
            traffic = frame_traffic(
                frame.reset_index(drop=True),
                times=frame[self.spec.timestamp or ""],
                scores=strategy.scores[window][served],
                labels=frame[self.spec.target].astype(object).where(arrived, None),
                label_times=frame[LABEL_TIME].where(arrived),
                binary=self.spec.task is Task.BINARY,
            )
            rows = Window(
                start=start.to_pydatetime(),
                end=now.to_pydatetime(),
                positions=np.arange(len(frame), dtype=np.intp),
            )
            result = assess_window(
                traffic, rows, model=champion.model, ref=champion.reference, options=self.options_
            )
        last = strategy.history[-1].started_at
        since = self.frame_[LABEL_TIME].between(pd.Timestamp(last), now, inclusive="right")
        return Look.of_window(
            result,
            now=now.to_pydatetime(),
            metric=self.spec.metric,
            higher_is_better=self.spec.higher_is_better,
            importances=champion.model.feature_importance(),
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
            recipe = TABULAR.recipe(
                self.spec,
                num_threads=self.num_threads,
                split=data.split(valid_fraction=self.spec.model.split.valid_fraction),
            )
            result = TABULAR.build(
                data.frame,
                spec=self.spec,
                recipe=recipe,
                numeric=self.numeric,
                categorical=self.categorical,
                weights=data.weights,
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
        reference = TABULAR.reference(result, data.frame)
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
