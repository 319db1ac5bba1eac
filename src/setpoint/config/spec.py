"""The pydantic model of ``setpoint.yaml``.

Every field has a default where a sensible one exists, so that a spec can be a
handful of lines. Unknown keys are errors: a typo must not be silently ignored.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from setpoint.config.durations import DURATION_HELP, parse_duration
from setpoint.config.policy import AutopilotPolicy

__all__ = [
    "AlertRule",
    "CanaryPolicy",
    "FeatureSpec",
    "GatePolicy",
    "JoinSpec",
    "ModelRecipe",
    "MonitoringSpec",
    "ProjectSpec",
    "ServingSpec",
    "SourceSpec",
    "SplitSpec",
    "Task",
    "ThresholdSpec",
    "TuningSpec",
    "ValidationPolicy",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Task(StrEnum):
    BINARY = "binary"
    MULTICLASS = "multiclass"
    REGRESSION = "regression"


class SourceSpec(_Strict):
    """Where a dataset comes from: a file (CSV or Parquet) or a SQL query."""

    path: str | None = None
    format: Literal["csv", "parquet"] | None = None
    sql: str | None = None
    url: str | None = Field(default=None, description="SQLAlchemy URL for `sql`.")
    encoding: str = "utf-8"
    delimiter: str = ","

    @model_validator(mode="after")
    def _one_kind(self) -> SourceSpec:
        if (self.path is None) == (self.sql is None):
            raise ValueError("give exactly one of 'path' or 'sql'")
        if self.sql is not None and not self.url:
            raise ValueError("'sql' needs 'url', the SQLAlchemy URL to run it on")
        return self


class JoinSpec(_Strict):
    """A point-in-time join of a feature table onto every batch of ``events``.

    Each event gets the latest row of ``source`` with the same ``by`` key whose
    ``feature_time`` is at or before the event's time, so training never sees
    a feature value from the future.
    """

    source: str = Field(description="A key of `sources` naming the feature table.")
    by: list[str] = Field(min_length=1)
    feature_time: str
    event_time: str | None = Field(default=None, description="Default: the spec's timestamp.")
    tolerance: str | None = Field(default=None, description="Oldest usable row, e.g. 3h, 2d.")
    columns: list[str] | None = Field(default=None, description="Default: every other column.")

    @model_validator(mode="after")
    def _duration(self) -> JoinSpec:
        if self.tolerance is not None:
            try:
                parse_duration(self.tolerance)
            except ValueError:
                raise ValueError(f"tolerance {self.tolerance!r} is not {DURATION_HELP}") from None
        return self

    @property
    def tolerance_delta(self) -> timedelta | None:
        return None if self.tolerance is None else parse_duration(self.tolerance)


class FeatureSpec(_Strict):
    """Overrides of what schema inference would decide for one column."""

    type: Literal["numeric", "categorical", "boolean", "datetime", "text"] | None = None
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
    nullable: bool | None = None
    exclude: bool = Field(default=False, description="Keep the column but do not train on it.")

    @model_validator(mode="after")
    def _range(self) -> FeatureSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class ValidationPolicy(_Strict):
    """How batches are checked against the schema."""

    max_bad_share: Annotated[float, Field(ge=0, le=1)] = 0.05
    null_rate_jump: Annotated[float, Field(ge=0, le=1)] = 0.10
    range_slack: Annotated[float, Field(ge=0)] = 0.0
    unseen_category: Literal["quarantine", "accept"] = "quarantine"
    out_of_range: Literal["quarantine", "accept"] = "quarantine"
    max_categories: Annotated[int, Field(gt=0)] = 1000


class SplitSpec(_Strict):
    """Time-aware split: train on the past, validate and test on later slices."""

    valid_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.15
    test_from: str | None = Field(
        default=None, description="Timestamp from which rows form the test set."
    )
    test_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.15

    @field_validator("test_from", mode="before")
    @classmethod
    def _unquoted_date(cls, value: Any) -> Any:
        # YAML reads an unquoted 2024-07-01 as a date; the user meant the text.
        return value.isoformat() if isinstance(value, date) else value


class ThresholdSpec(_Strict):
    """How the binary decision threshold is chosen on validation data."""

    objective: Literal["f1", "recall_at_precision", "fixed"] = "f1"
    precision: Annotated[float, Field(gt=0, lt=1)] | None = None
    value: Annotated[float, Field(gt=0, lt=1)] | None = None

    @model_validator(mode="after")
    def _needs(self) -> ThresholdSpec:
        if self.objective == "recall_at_precision" and self.precision is None:
            raise ValueError("objective 'recall_at_precision' needs 'precision'")
        if self.objective == "fixed" and self.value is None:
            raise ValueError("objective 'fixed' needs 'value'")
        return self


class TuningSpec(_Strict):
    """Optional hyper-parameter search with Optuna."""

    trials: Annotated[int, Field(ge=0)] = 0
    timeout_s: Annotated[float, Field(gt=0)] | None = None


class ModelRecipe(_Strict):
    """Preprocessing plus a model family."""

    family: Literal["lightgbm", "linear"] = "lightgbm"
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int = 42
    early_stopping_rounds: Annotated[int, Field(ge=0)] = 50
    class_weight: Literal["balanced", "none"] = "none"
    calibration: Literal["isotonic", "sigmoid", "none"] = "isotonic"
    threshold: ThresholdSpec = ThresholdSpec()
    split: SplitSpec = SplitSpec()
    tuning: TuningSpec = TuningSpec()


class GatePolicy(_Strict):
    """When a challenger may take the champion alias."""

    margin: float = Field(
        default=0.0, description="Required lead on the primary metric (lower CI bound)."
    )
    confidence: Annotated[float, Field(gt=0, lt=1)] = 0.95
    bootstrap: Annotated[int, Field(ge=100)] = 1000
    max_segment_drop: Annotated[float, Field(ge=0)] = 0.05
    min_segment_rows: Annotated[int, Field(ge=1)] = 200
    seed: int = 0


class CanaryPolicy(_Strict):
    """How much traffic a canary takes and when it is pulled."""

    share: Annotated[float, Field(gt=0, lt=1)] = 0.1
    min_requests: Annotated[int, Field(ge=1)] = 100
    max_error_rate: Annotated[float, Field(ge=0, le=1)] = 0.02
    max_p99_ms: Annotated[float, Field(gt=0)] = 250.0


class ServingSpec(_Strict):
    """How ``setpoint serve`` answers requests."""

    on_invalid: Literal["reject", "impute"] = "reject"
    unseen_category: Literal["reject", "accept"] = "accept"
    max_batch: Annotated[int, Field(ge=1, le=100_000)] = 1000
    max_body_bytes: Annotated[int, Field(ge=1024)] = 4 * 2**20
    predict_auth: Literal["open", "key"] = "open"
    feedback_auth: Literal["open", "key"] | None = Field(
        default=None,
        description=(
            "`open`, or `key`: POST /v1/feedback then needs an API key of scope feedback "
            "or admin. Default: as `predict_auth`."
        ),
    )
    reload_interval: Annotated[float, Field(gt=0, le=3600)] = 1.0
    explain_top: Annotated[int, Field(ge=1)] = 5
    canary: CanaryPolicy = CanaryPolicy()
    keep_alive_timeout: Annotated[int, Field(ge=1, le=3600)] = Field(
        default=5, description="Seconds an idle keep-alive connection is kept open."
    )
    header_timeout: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=10.0,
        description="Seconds a connection may take to send a request's line and headers.",
    )
    body_timeout: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=30.0,
        description="Seconds a request may take to send its whole body after its headers.",
    )
    max_connections: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        default=2048,
        description="Open connections per worker; one more is answered 503 and closed.",
    )

    @property
    def feedback_keyed(self) -> bool:
        """Whether POST /v1/feedback needs a key: ``feedback_auth``, else ``predict_auth``."""
        return (self.feedback_auth or self.predict_auth) == "key"


AlertRule = Literal["drift", "realized", "estimated"]


def _every_rule() -> list[AlertRule]:
    return ["drift", "realized", "estimated"]


class MonitoringSpec(_Strict):
    """What ``setpoint monitor`` holds the served model to, and where it says so."""

    setpoint: float | None = Field(
        default=None, description="The level of `metric` the model must hold, e.g. 0.5."
    )
    max_drift_share: Annotated[float, Field(gt=0, le=1)] = 0.5
    alerts: list[AlertRule] = Field(default_factory=_every_rule)
    webhook: str | None = Field(default=None, description="http(s) URL each alert is POSTed to.")

    @field_validator("alerts")
    @classmethod
    def _once(cls, value: list[AlertRule]) -> list[AlertRule]:
        repeated = sorted({rule for rule in value if value.count(rule) > 1})
        if repeated:
            raise ValueError(f"rules {repeated} are listed more than once")
        return value

    @field_validator("webhook")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(
                f"{value!r} is not an http or https URL with a host, "
                "like https://hooks.example.com/setpoint"
            )
        return value


_CLASSIFICATION_METRICS = {"roc_auc", "pr_auc", "log_loss", "brier", "recall_at_precision"}
_REGRESSION_METRICS = {"mae", "rmse"}


class ProjectSpec(_Strict):
    """``setpoint.yaml``."""

    project: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    task: Task
    target: str
    timestamp: str | None = None
    entity: str | None = Field(default=None, description="Unique id column of each row.")
    sources: dict[str, SourceSpec] = Field(default_factory=dict)
    joins: list[JoinSpec] = Field(default_factory=list)
    features: dict[str, FeatureSpec] = Field(default_factory=dict)
    segments: list[str] = Field(default_factory=list)
    model: ModelRecipe = ModelRecipe()
    metric: str = Field(
        default="", description="Primary metric; empty picks pr_auc, log_loss or rmse by task."
    )
    gate: GatePolicy = GatePolicy()
    validation: ValidationPolicy = ValidationPolicy()
    serving: ServingSpec = ServingSpec()
    monitoring: MonitoringSpec = MonitoringSpec()
    autopilot: AutopilotPolicy | None = Field(
        default=None, description="The closed loop; `setpoint autopilot` needs it."
    )

    @model_validator(mode="before")
    @classmethod
    def _default_metric(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("metric"):
            default = {"binary": "pr_auc", "multiclass": "log_loss", "regression": "rmse"}
            data = {**data, "metric": default.get(str(data.get("task")), "pr_auc")}
        return data

    @model_validator(mode="after")
    def _metric_fits_task(self) -> ProjectSpec:
        allowed = _REGRESSION_METRICS if self.task is Task.REGRESSION else _CLASSIFICATION_METRICS
        if self.task is Task.MULTICLASS:
            allowed = {"log_loss", "roc_auc", "accuracy", "macro_f1"}
        if self.metric not in allowed:
            raise ValueError(
                f"metric {self.metric!r} does not fit task {self.task.value!r}; "
                f"choose one of {sorted(allowed)}"
            )
        for i, join in enumerate(self.joins):
            if join.source not in self.sources:
                raise ValueError(
                    f"joins[{i}].source {join.source!r} is not a key of 'sources' "
                    f"(have {sorted(self.sources)})"
                )
            if join.event_time is None and self.timestamp is None:
                raise ValueError(f"joins[{i}] needs 'event_time' when the spec has no timestamp")
        reserved = {self.target, self.timestamp, self.entity} - {None}
        for name, feature in self.features.items():
            if name in reserved and not feature.exclude:
                raise ValueError(
                    f"features.{name}: the target, timestamp and entity are not features"
                )
        return self

    @model_validator(mode="after")
    def _setpoint_fits_metric(self) -> ProjectSpec:
        level = self.monitoring.setpoint
        if level is None:
            return self
        bounded = self.metric not in {"log_loss", "mae", "rmse"}
        if not math.isfinite(level) or level < 0 or (bounded and level > 1):
            allowed = "in [0, 1]" if bounded else "a finite number >= 0"
            raise ValueError(
                f"monitoring.setpoint {level!r} is not a level of {self.metric}: "
                f"it must be {allowed}"
            )
        return self

    @model_validator(mode="after")
    def _metric_triggers_have_a_level(self) -> ProjectSpec:
        if self.autopilot is None:
            return self
        for name in ("realized", "estimated"):
            trigger = getattr(self.autopilot.triggers, name)
            if trigger is None or trigger.max_drop is not None or trigger.level is not None:
                continue
            if self.monitoring.setpoint is None:
                raise ValueError(
                    f"autopilot.triggers.{name} has no 'level' or 'max_drop', and "
                    "monitoring.setpoint is not set to fall back on; give one of the three"
                )
        return self

    @model_validator(mode="after")
    def _test_from_is_a_time(self) -> ProjectSpec:
        # Checked here, with the spec's line, rather than after the data is loaded.
        # (A bare SplitSpec also takes numbers, for numeric clocks; a project's
        # timestamp is always date-times.)
        test_from = self.model.split.test_from
        if test_from is None:
            return self
        if self.timestamp is None:
            # Without a timestamp the split is a shuffle: test_from would be ignored.
            raise ValueError(
                "model.split: 'test_from' needs a 'timestamp' column to compare with; set "
                "'timestamp' or use 'test_fraction'"
            )
        try:
            datetime.fromisoformat(test_from)
        except ValueError:
            raise ValueError(
                f"model.split: test_from {test_from!r} is not an ISO 8601 date or date-time "
                "like 2024-07-01 or 2024-07-01T00:00:00Z"
            ) from None
        return self

    @property
    def higher_is_better(self) -> bool:
        return self.metric not in {"log_loss", "brier", "mae", "rmse"}
