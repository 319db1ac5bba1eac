"""The ``autopilot`` section of ``setpoint.yaml``: when to retrain, on what, and how to ship.

Every trigger is off unless it is written down; a section with no trigger is an
error, because an autopilot that can never fire is a typo, not a policy::

    autopilot:
      triggers:
        drift: {features: 5, share: 0.4}   # 40% of the 5 most important features drift
        realized: {max_drop: 0.05}         # live metric 0.05 worse than the model's test
        schedule: 30d
      cooldown: 7d
      data: {mode: sliding, window: 90d}

Durations are written as a number and a unit: ``90s``, ``30min``, ``6h``, ``7d``
or ``2w``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from setpoint.config.durations import Duration, format_duration

__all__ = [
    "AutopilotPolicy",
    "BudgetPolicy",
    "DataPolicy",
    "DriftTrigger",
    "MetricTrigger",
    "ShadowPolicy",
    "TriggerSpec",
    "WatchPolicy",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DriftTrigger(_Strict):
    """Fire when enough of the model's most important features drift."""

    features: Annotated[int, Field(ge=1)] = Field(
        default=5, description="How many of the most important features are watched."
    )
    share: Annotated[float, Field(gt=0, le=1)] = Field(
        default=0.4, description="Importance-weighted share of them that must drift."
    )


class MetricTrigger(_Strict):
    """Fire when the realized (or estimated) metric is worse than a level.

    ``level`` is a value of the spec's metric (default: ``monitoring.setpoint``);
    ``max_drop`` is how far it may fall from the model's own test result, or,
    with ``baseline: estimated``, from what the scores of the same window
    promise (the label-free estimate): a gap that opens when the world no
    longer matches the model, whatever the share of positives does. With both,
    either one fires. "Worse" is lower, or higher for losses.
    """

    level: float | None = None
    max_drop: Annotated[float, Field(gt=0)] | None = None
    baseline: Literal["test", "estimated"] = Field(
        default="test",
        description="What max_drop falls from: the model's test result, or (for the "
        "realized metric) the label-free estimate of the same window.",
    )
    min_labels: Annotated[int, Field(ge=1)] = Field(
        default=500, description="Labelled rows a window needs before it is judged."
    )


class TriggerSpec(_Strict):
    """What may start a retrain; each is off unless given."""

    drift: DriftTrigger | None = None
    realized: MetricTrigger | None = None
    estimated: MetricTrigger | None = None
    schedule: Duration | None = None
    new_labels: Annotated[int, Field(ge=1)] | None = None


class BudgetPolicy(_Strict):
    """How much retraining a period may cost."""

    max_retrains: Annotated[int, Field(ge=1)] = 4
    period: Duration = timedelta(days=30)
    max_train_seconds: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="Training time allowed per period, in seconds."
    )


class DataPolicy(_Strict):
    """Which rows a retrain learns from. Only labels that had arrived are ever used."""

    mode: Literal["sliding", "all", "weighted"] = "sliding"
    window: Duration = timedelta(days=90)
    half_life: Duration = Field(
        default=timedelta(days=30), description="Weighted mode: a row's weight halves per this."
    )
    holdout: Duration = Field(
        default=timedelta(days=7),
        description="The most recent labelled span, kept out of training to judge the gate on.",
    )
    min_rows: Annotated[int, Field(ge=100)] = 5_000


class ShadowPolicy(_Strict):
    """A gated challenger first scores live requests off the response path.

    It is promoted once it has scored ``requests`` requests over at least
    ``duration`` without failing, and, where labels arrived for those requests
    (at least ``min_labels``), without a metric worse than the champion's on
    them by more than ``max_drop``.
    """

    requests: Annotated[int, Field(ge=0)] = 1_000
    duration: Duration = timedelta(hours=6)
    max_drop: Annotated[float, Field(ge=0)] = 0.02
    min_labels: Annotated[int, Field(ge=1)] = 500
    max_error_rate: Annotated[float, Field(ge=0, le=1)] = 0.0


class WatchPolicy(_Strict):
    """After a promotion, the old champion keeps scoring in shadow to compare."""

    duration: Duration = timedelta(days=7)
    max_drop: Annotated[float, Field(ge=0)] = 0.02
    min_labels: Annotated[int, Field(ge=1)] = 500


class AutopilotPolicy(_Strict):
    """``autopilot``: the closed loop's triggers, limits, training data and rollout."""

    check_every: Duration = Field(
        default=timedelta(hours=1), description="How often the loop looks at the triggers."
    )
    window: Duration = Field(
        default=timedelta(days=7), description="The span of traffic each look judges."
    )
    triggers: TriggerSpec = TriggerSpec()
    cooldown: Duration = timedelta(days=7)
    budget: BudgetPolicy = BudgetPolicy()
    data: DataPolicy = DataPolicy()
    shadow: ShadowPolicy = ShadowPolicy()
    watch: WatchPolicy = WatchPolicy()
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 3

    @model_validator(mode="after")
    def _some_trigger(self) -> AutopilotPolicy:
        if not any(getattr(self.triggers, name) is not None for name in TriggerSpec.model_fields):
            raise ValueError(
                "triggers: none is set, so the autopilot would never retrain; set at least "
                "one of drift, realized, estimated, schedule or new_labels"
            )
        if self.data.holdout >= self.data.window and self.data.mode == "sliding":
            raise ValueError(
                f"data.holdout ({format_duration(self.data.holdout)}) must be shorter than "
                f"data.window ({format_duration(self.data.window)}): nothing would be left to "
                "train on"
            )
        return self
