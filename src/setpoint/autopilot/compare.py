"""How the rollout compares two models on live traffic: the paired bootstrap on labelled rows.

Shadow and watch both ask this: is the model that would serve (or serves) worse
than the other on the requests both scored, once labels arrived?
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from setpoint.train.bootstrap import paired_bootstrap

__all__ = ["Comparison", "compare_live"]

FloatArray = npt.NDArray[np.float64]


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
    """The paired bootstrap of ``candidate`` against ``baseline`` (both scored every row)."""
    boot = paired_bootstrap(
        y, baseline, candidate, metric=metric, n=n_boot, confidence=confidence, seed=seed
    )
    return Comparison(delta=boot.delta, low=boot.low, high=boot.high, n=len(y))
