"""One retrain, as pure steps on frames: the training set as of a moment, the model, the gate.

Both the live loop (``loop.py``) and the replay (``simulate.py``) call these, so
the replay measures the code that runs in production.

The training set is as-of correct: a row is used only if its label had arrived
by ``as_of`` (``label_time <= as_of``), whatever its own time. The most recent
``holdout`` of those rows is kept out of training; the gate judges challenger
and champion on exactly those rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
import pandas as pd

from setpoint.config.durations import format_duration
from setpoint.config.policy import DataPolicy
from setpoint.config.spec import ProjectSpec, SplitSpec, Task
from setpoint.errors import InvalidParameterError, TrainingError
from setpoint.registry.gate import GateDecision, evaluate_gate
from setpoint.train.bootstrap import paired_bootstrap
from setpoint.train.tabular_model import TabularModel
from setpoint.train.trainer import TrainResult, train_model

__all__ = ["Comparison", "TrainingSet", "compare_live", "judge", "retrain", "training_set"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class TrainingSet:
    """The rows a retrain learns from (oldest first), their weights, and the holdout's start."""

    frame: pd.DataFrame
    weights: FloatArray | None
    holdout_from: pd.Timestamp
    as_of: datetime


def training_set(
    history: pd.DataFrame,
    *,
    as_of: datetime,
    timestamp: str,
    label_time: str,
    target: str,
    policy: DataPolicy,
) -> TrainingSet:
    """The rows of ``history`` a retrain at ``as_of`` may use, by ``policy``.

    ``history`` holds every row seen so far, with ``label_time`` (when its label
    arrived; missing if it has not) beside the features and ``target``. The
    sliding window and the weights' ages count back from the newest row whose
    label had arrived.
    """
    for column in (timestamp, label_time, target):
        if column not in history.columns:
            raise InvalidParameterError(
                owner="training_set",
                parameter="history",
                expected=f"a frame with a {column!r} column",
                got=sorted(map(str, history.columns))[:10],
            )
    cutoff = pd.Timestamp(as_of)
    arrived = history[label_time].notna() & (history[label_time] <= cutoff)
    arrived &= history[target].notna()
    # The window ends at the newest labelled row, not at the clock: the same in
    # production (labels are recent) and right for a replay of old traffic.
    newest = history.loc[arrived, timestamp].max() if arrived.any() else None
    if policy.mode == "sliding" and newest is not None:
        arrived &= history[timestamp] >= newest - pd.Timedelta(policy.window)
    frame = history.loc[arrived].sort_values(timestamp, kind="stable").reset_index(drop=True)
    if len(frame) < policy.min_rows:
        raise TrainingError(
            f"Only {len(frame)} labelled rows had arrived by {as_of:%Y-%m-%d %H:%M} "
            f"(data.min_rows is {policy.min_rows}); a retrain would learn from too little.",
            rows=len(frame),
        )
    weights = None
    if policy.mode == "weighted":
        age = (frame[timestamp].iloc[-1] - frame[timestamp]).dt.total_seconds()
        weights = np.power(0.5, age.to_numpy(dtype=np.float64) / policy.half_life.total_seconds())
    holdout_from = frame[timestamp].iloc[-1] - pd.Timedelta(policy.holdout)
    if not (frame[timestamp] < holdout_from).any():
        raise TrainingError(
            f"Every labelled row is in the last {format_duration(policy.holdout)} "
            "(data.holdout): nothing would be left to train on.",
            rows=len(frame),
        )
    return TrainingSet(frame=frame, weights=weights, holdout_from=holdout_from, as_of=as_of)


def retrain(
    spec: ProjectSpec,
    data: TrainingSet,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    num_threads: int = 0,
) -> TrainResult:
    """Train on ``data`` with the spec's recipe; the holdout becomes the test slice."""
    if spec.timestamp is None:
        raise InvalidParameterError(
            owner="retrain", parameter="spec.timestamp", expected="a time column", got=None
        )
    split = SplitSpec(
        valid_fraction=spec.model.split.valid_fraction, test_from=data.holdout_from.isoformat()
    )
    params = dict(spec.model.params)
    if num_threads and spec.model.family == "lightgbm":
        params.setdefault("num_threads", num_threads)
    recipe = spec.model.model_copy(update={"split": split, "params": params})
    return train_model(
        data.frame,
        task=spec.task,
        target=spec.target,
        features_numeric=numeric,
        features_categorical=categorical,
        timestamp=spec.timestamp,
        recipe=recipe,
        segments=spec.segments,
        primary_metric=spec.metric,
        sample_weight=data.weights,
    )


def judge(
    spec: ProjectSpec,
    data: TrainingSet,
    result: TrainResult,
    *,
    champion: TabularModel | None,
    challenger_version: int,
    champion_version: int | None,
) -> GateDecision:
    """The registry's gate on the holdout: the challenger's scores against the champion's."""
    holdout = data.frame.iloc[result.test_index]
    champion_scores = None if champion is None else np.asarray(champion.predict_scores(holdout))
    return evaluate_gate(
        result.test_labels,
        champion_scores,
        result.test_scores,
        metric=spec.metric,
        policy=spec.gate,
        challenger=challenger_version,
        champion=champion_version if champion is not None else None,
        segments=holdout[spec.segments].reset_index(drop=True) if spec.segments else None,
        stratify=spec.task is not Task.REGRESSION,
    )


@dataclass(frozen=True, slots=True)
class Comparison:
    """A candidate's lead over a baseline on the same live, labelled rows (negative: worse)."""

    delta: float
    low: float
    high: float
    n: int

    def regressed(self, max_drop: float) -> bool:
        """Worse beyond doubt (the whole interval under zero) and by more than ``max_drop``."""
        return self.high < 0 and self.delta < -max_drop

    def to_dict(self) -> dict[str, float | int]:
        return {"delta": self.delta, "low": self.low, "high": self.high, "labels": self.n}


def compare_live(
    y: FloatArray,
    baseline: FloatArray,
    candidate: FloatArray,
    *,
    metric: str,
    confidence: float = 0.95,
    n_boot: int = 300,
    seed: int = 0,
) -> Comparison:
    """The paired bootstrap of ``candidate`` against ``baseline`` (both scored every row).

    Shadow and watch both ask this: is the model that would serve (or serves)
    worse than the other on the requests both scored, once labels arrived?
    """
    boot = paired_bootstrap(
        y, baseline, candidate, metric=metric, n=n_boot, confidence=confidence, seed=seed
    )
    return Comparison(delta=boot.delta, low=boot.low, high=boot.high, n=len(y))
