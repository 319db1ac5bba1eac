"""What ``setpoint monitor`` finds: one ``WindowResult`` per window, in a ``MonitorResult``.

Both render to JSON (``to_dict``), which is also how a window is stored in the
metadata store; ``WindowResult.from_dict`` reads a stored window back, so a
window whose traffic and labels have not changed since it was computed is
shown without computing it again. ``read_window`` is the same for a reader that
must go on without a row of another shape (written by another version, or by
hand): the dashboard and the ``/metrics`` gauges.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from setpoint._json import jsonable, revive
from setpoint.stats.cbpe import Estimate, EstimationError
from setpoint.stats.drift import DriftReport
from setpoint.stats.multivariate import MultivariateDriftResult
from setpoint.stats.performance import PerformanceResult, SegmentPerformance

__all__ = ["SEGMENT_ABSENT", "MonitorResult", "WindowResult", "read_window"]

SEGMENT_ABSENT = "not in the logged inputs of this window"


@dataclass(frozen=True)
class WindowResult:
    """One window: its traffic, drift, realized and estimated metric.

    ``segments`` holds the realized metric per value of each of the spec's
    segment columns (``skipped`` says why one has none: too few labelled rows,
    or a column absent from the logged inputs). ``multivariate`` is the domain
    classifier's verdict when one was asked for, else ``multivariate_skipped``
    says why there is none. ``labels_skipped`` stored labels of the window's rows
    were not used because the model cannot be judged on them (not one of its
    classes, not a finite number); ``labels_skipped_reasons`` says why.
    """

    start: datetime
    end: datetime
    n: int
    versions: tuple[str, ...]
    n_labelled: int
    drift: DriftReport
    realized: PerformanceResult | None
    estimate: Estimate | None
    error: EstimationError | None
    segments: tuple[SegmentPerformance, ...] = ()
    multivariate: MultivariateDriftResult | None = None
    multivariate_skipped: str | None = None
    labels_skipped: int = 0
    labels_skipped_reasons: tuple[str, ...] = ()

    def top_drifted(self, count: int = 3) -> tuple[str, ...]:
        """The drifted features that weigh most in the model, most important first."""
        drifted = [f for f in self.drift.features if f.drifted]
        drifted.sort(key=lambda f: (-f.weight, -f.psi, f.name))
        return tuple(f.name for f in drifted[:count])

    def worst_segments(
        self, metric: str, *, higher_is_better: bool = True, count: int = 3
    ) -> tuple[SegmentPerformance, ...]:
        """The measured segments with the worst ``metric``, worst first."""
        sign = 1.0 if higher_is_better else -1.0
        scored = [
            (sign * value, segment)
            for segment in self.segments
            if (value := _point(segment, metric)) is not None
        ]
        # Ties: the larger segment first, then by name, so the order is reproducible.
        scored.sort(key=lambda p: (p[0], -p[1].n, p[1].column, str(p[1].segment)))
        return tuple(segment for _, segment in scored[:count])

    def set_aside(self, metric: str, min_segment_rows: int) -> tuple[str, ...]:
        """The segments without a value, for a reader: per column, the values with too
        few labelled rows (their count), then every other reason."""
        few: dict[str, list[str]] = {}
        other: list[str] = []
        for s in self.segments:
            found = s.metrics.get(metric)
            name = "(missing)" if s.segment is None else str(s.segment)
            if s.skipped == SEGMENT_ABSENT:
                other.append(f"{s.column}: {s.skipped}")
            elif s.skipped is not None and s.n < min_segment_rows:
                few.setdefault(s.column, []).append(f"{name} ({s.n})")
            elif s.skipped is not None:
                other.append(f"{s.column}={name}: {s.skipped}")
            elif found is not None and found.value is None:
                other.append(f"{s.column}={name}: {found.reason}")
        return (*(f"{column}: {', '.join(names)}" for column, names in few.items()), *other)

    def separating(self, count: int = 3) -> tuple[tuple[str, float], ...]:
        """The features that most tell a drifted window from the reference, with their share."""
        found = self.multivariate
        if found is None or not found.drifted:
            return ()  # below the threshold, the gain is spread over noise
        # A crumb of the gain separates nothing worth naming.
        return tuple((name, share) for name, share in found.top_features[:count] if share >= 0.01)

    def to_dict(self) -> dict[str, Any]:
        realized = None
        if self.realized is not None:
            # Its segments are the window's "segments", listed once.
            realized = {k: v for k, v in self.realized.to_dict().items() if k != "segments"}
        multivariate: dict[str, Any] | None = None
        if self.multivariate is not None:
            multivariate = {**self.multivariate.to_dict(), "skipped": None}
        elif self.multivariate_skipped is not None:
            multivariate = {"skipped": self.multivariate_skipped}
        payload: dict[str, Any] = jsonable(
            {
                "start": self.start.isoformat(),
                "end": self.end.isoformat(),
                "n": self.n,
                "versions": list(self.versions),
                "n_labelled": self.n_labelled,
                "drifted_features": list(self.top_drifted(len(self.drift.features))),
                "drift": self.drift.to_dict(),
                "realized": realized,
                "segments": [asdict(s) for s in self.segments],
                "estimate": None if self.estimate is None else self.estimate.to_dict(),
                "error": None if self.error is None else self.error.to_dict(),
                "multivariate": multivariate,
                "labels_skipped": self.labels_skipped,
                "labels_skipped_reasons": list(self.labels_skipped_reasons),
            }
        )
        return payload

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowResult:
        """The window ``to_dict`` wrote. Raises ``TypeError`` or ``ValueError`` for
        JSON of another shape."""
        if not isinstance(data, dict):
            raise TypeError(f"A window is read from an object, not {data!r:.80}")
        realized = data.get("realized")
        segments = data.get("segments") or []
        multivariate = data.get("multivariate") or {}
        fields = {
            **data,
            "realized": None if realized is None else {**realized, "segments": segments},
            "multivariate": multivariate if "auc" in multivariate else None,
            "multivariate_skipped": multivariate.get("skipped"),
        }
        window: WindowResult = revive(cls, fields)
        return window


def read_window(data: Any) -> WindowResult | None:
    """The stored window ``data``, or None when it is of another shape."""
    try:
        return WindowResult.from_dict(data)
    # What reading JSON of another shape can raise: a missing or extra field, a wrong
    # type (a list where an object is read has no .get), a number beyond any float.
    except (AttributeError, KeyError, OverflowError, TypeError, ValueError):
        return None


def _point(segment: SegmentPerformance, metric: str) -> float | None:
    found = segment.metrics.get(metric)
    return None if segment.skipped is not None or found is None else found.value


@dataclass(frozen=True)
class MonitorResult:
    """Every window of ``project``'s served traffic, against model ``version``.

    ``segment_columns`` are the spec's segments, each measured where it has at
    least ``min_segment_rows`` labelled rows in a window; ``higher_is_better``
    says which way ``metric`` improves; ``multivariate`` whether the domain
    classifier was run.
    """

    project: str
    version: int
    task: str
    metric: str
    window: str
    windows: tuple[WindowResult, ...]
    warnings: tuple[str, ...] = field(default=())
    segment_columns: tuple[str, ...] = ()
    min_segment_rows: int = 200
    higher_is_better: bool = True
    multivariate: bool = False
    reused: int = 0  # windows read back from the store, unchanged since they were computed

    def to_dict(self) -> dict[str, Any]:
        payload: dict[str, Any] = jsonable(
            {
                "project": self.project,
                "version": self.version,
                "task": self.task,
                "metric": self.metric,
                "higher_is_better": self.higher_is_better,
                "window": self.window,
                "segment_columns": list(self.segment_columns),
                "min_segment_rows": self.min_segment_rows,
                "multivariate": self.multivariate,
                "reused": self.reused,
                "warnings": list(self.warnings),
                "windows": [w.to_dict() for w in self.windows],
            }
        )
        return payload
