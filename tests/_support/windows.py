"""A monitored window as the monitoring code computes it, for tests that read one back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from setpoint.monitor.results import WindowResult
from setpoint.stats.cbpe import estimate_performance, estimation_error
from setpoint.stats.drift import detect_drift
from setpoint.stats.performance import realized_performance
from setpoint.stats.reference import Reference

START = datetime(2013, 8, 7, tzinfo=UTC)
END = START + timedelta(days=1)


def real_window() -> WindowResult:
    """A window the monitoring code computes: drifted distance, labels for most rows."""
    rng = np.random.default_rng(7)
    n = 1500

    def frame(shift: float) -> pd.DataFrame:
        out = pd.DataFrame(
            {
                "distance": rng.normal(1000 + shift, 200, n),
                "carrier": rng.choice(["AA", "UA", "DL"], n),
                "score": rng.uniform(0, 1, n),
            }
        )
        out["predicted"] = (out["score"] >= 0.5).astype(int)
        return out

    reference = Reference.build(
        frame(0),
        numeric=["distance"],
        categorical=["carrier"],
        prediction="score",
        label="predicted",
    )
    current = frame(400)
    drift = detect_drift(reference, current, importances={"distance": 0.7, "carrier": 0.3})
    scores = current["score"].to_numpy()
    labels = (rng.uniform(size=n) < scores).astype(float)
    labels[:300] = np.nan
    realized = realized_performance(
        labels, scores, task="binary", metrics=["pr_auc", "f1"], threshold=0.5, n_boot=50
    )
    estimate = estimate_performance(scores, threshold=0.5, metrics=["pr_auc", "f1"], n_draws=50)
    return WindowResult(
        start=START,
        end=END,
        n=n,
        versions=("3",),
        n_labelled=n - 300,
        drift=drift,
        realized=realized,
        estimate=estimate,
        error=estimation_error(estimate, realized),
    )
