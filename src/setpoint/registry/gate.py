"""The promotion gate: a challenger takes ``champion`` only on evidence.

It must beat the champion on the same held-out rows by the policy's margin,
judged by the lower bound of a paired bootstrap confidence interval of the
primary metric, and no declared segment may drop more than the policy allows.
Every decision, passed or not, is stored with its numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.engine import Connection

from setpoint._json import jsonable
from setpoint.config.spec import GatePolicy, ProjectSpec, Task
from setpoint.kinds.protocol import Evaluation
from setpoint.registry.events import record_event
from setpoint.store.tables import gate_decisions, utcnow
from setpoint.train.bootstrap import paired_bootstrap
from setpoint.train.metrics import HIGHER_IS_BETTER, metric_function

__all__ = ["GateDecision", "SegmentCheck", "evaluate_gate", "judge", "record_gate_decision"]


@dataclass(frozen=True, slots=True)
class SegmentCheck:
    column: str
    value: str
    n: int
    champion: float
    challenger: float
    drop: float
    ok: bool


@dataclass(frozen=True, slots=True)
class GateDecision:
    passed: bool
    metric: str
    challenger: int
    champion: int | None
    n: int
    challenger_value: float | None = None
    champion_value: float | None = None
    delta: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    margin: float = 0.0
    confidence: float = 0.95
    segments: list[SegmentCheck] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(jsonable(asdict(self)))


def evaluate_gate(
    y: np.ndarray,
    champion_scores: np.ndarray | None,
    challenger_scores: np.ndarray,
    *,
    metric: str,
    policy: GatePolicy,
    challenger: int,
    champion: int | None,
    segments: pd.DataFrame | None = None,
    stratify: bool = False,
) -> GateDecision:
    """Judge ``challenger`` against ``champion`` on the same rows ``y``.

    ``stratify`` resamples within each class (for classification tasks).
    """
    score = metric_function(metric)
    if champion is None or champion_scores is None:
        value = float(score(y, challenger_scores))
        return GateDecision(
            passed=True,
            metric=metric,
            challenger=challenger,
            champion=None,
            n=len(y),
            challenger_value=value,
            reasons=["no champion yet: the first model takes the alias"],
        )
    boot = paired_bootstrap(
        y,
        champion_scores,
        challenger_scores,
        metric=metric,
        n=policy.bootstrap,
        confidence=policy.confidence,
        seed=policy.seed,
        # Resampling within each class keeps rare positives from vanishing.
        strata=y if stratify else None,
    )
    reasons: list[str] = []
    passed = boot.low > policy.margin
    interval = f"{policy.confidence:.0%} CI [{boot.low:+.4f}, {boot.high:+.4f}]"
    lead = f"lead {boot.delta:+.4f} on {metric}, {interval}"
    reasons.append(
        f"{lead} {'clears' if passed else 'does not clear'} the margin {policy.margin:+.4f}"
    )
    checks = _segment_checks(y, champion_scores, challenger_scores, segments, metric, policy)
    for check in checks:
        if not check.ok:
            passed = False
            reasons.append(
                f"segment {check.column}={check.value} drops {check.drop:.4f} "
                f"(> {policy.max_segment_drop}) on {metric}"
            )
    return GateDecision(
        passed=passed,
        metric=metric,
        challenger=challenger,
        champion=champion,
        n=len(y),
        challenger_value=boot.metric_b,
        champion_value=boot.metric_a,
        delta=boot.delta,
        ci_low=boot.low,
        ci_high=boot.high,
        margin=policy.margin,
        confidence=policy.confidence,
        segments=checks,
        reasons=reasons,
    )


def _segment_checks(
    y: np.ndarray,
    champion_scores: np.ndarray,
    challenger_scores: np.ndarray,
    segments: pd.DataFrame | None,
    metric: str,
    policy: GatePolicy,
) -> list[SegmentCheck]:
    if segments is None or segments.empty:
        return []
    score = metric_function(metric)
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    checks = []
    for column in segments.columns:
        values = segments[column].astype("string").fillna("<null>").to_numpy()
        for value in pd.unique(values):
            mask = values == value
            n = int(mask.sum())
            if n < policy.min_segment_rows:
                continue
            a = float(score(y[mask], champion_scores[mask]))
            b = float(score(y[mask], challenger_scores[mask]))
            if not (np.isfinite(a) and np.isfinite(b)):
                continue
            drop = sign * (a - b)
            checks.append(
                SegmentCheck(
                    str(column), str(value), n, a, b, drop, drop <= policy.max_segment_drop
                )
            )
    return checks


def judge(
    spec: ProjectSpec,
    *,
    holdout: pd.DataFrame,
    challenger: Evaluation,
    champion: Evaluation | None,
    challenger_version: int,
    champion_version: int | None,
) -> GateDecision:
    """The spec's gate on ``holdout``: the challenger's scores against the champion's.

    Every path that gates a model calls this: ``Project.train``, ``Project.promote``,
    the autopilot's retrain and the flights replay. ``holdout`` holds the rows both
    evaluations score, in the same order, for the spec's segments.
    """
    return evaluate_gate(
        challenger.labels,
        None if champion is None else champion.scores,
        challenger.scores,
        metric=spec.metric,
        policy=spec.gate,
        challenger=challenger_version,
        champion=None if champion is None else champion_version,
        segments=holdout[spec.segments].reset_index(drop=True) if spec.segments else None,
        stratify=spec.task is not Task.REGRESSION,
    )


def record_gate_decision(conn: Connection, *, project: str, decision: GateDecision) -> None:
    details = decision.to_dict()
    conn.execute(
        gate_decisions.insert().values(
            project=project,
            challenger=decision.challenger,
            champion=decision.champion,
            passed=decision.passed,
            metric=decision.metric,
            details=details,
            at=utcnow(),
        )
    )
    record_event(conn, project=project, kind="gate_decision", payload=details)
