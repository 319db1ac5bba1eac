"""The rows a retrain at a moment may learn from: as-of correct, with the gate's holdout.

A row is used only if its label had arrived by ``as_of`` (``label_time <=
as_of``), whatever its own time. The most recent ``holdout`` of those rows is
kept out of training; the gate judges challenger and champion on exactly those
rows. The live autopilot and the flights replay both call ``training_set``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
import pandas as pd

from setpoint.config.durations import format_duration
from setpoint.config.policy import DataPolicy
from setpoint.config.spec import SplitSpec
from setpoint.errors import InvalidParameterError, TrainingError

__all__ = ["TrainingSet", "training_set"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class TrainingSet:
    """The rows a retrain learns from (oldest first), their weights, and the holdout's start."""

    frame: pd.DataFrame
    weights: FloatArray | None
    holdout_from: pd.Timestamp
    as_of: datetime

    def split(self, *, valid_fraction: float) -> SplitSpec:
        """The split that makes the holdout the test slice."""
        return SplitSpec(valid_fraction=valid_fraction, test_from=self.holdout_from.isoformat())


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
