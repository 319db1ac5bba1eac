"""Gauges of the latest monitored window, read from the metadata store for ``/metrics``.

The numbers come from the store that every worker shares, not from a worker's
own counting, so they never go into the per-worker snapshots that ``/metrics``
adds up: whichever worker answers a scrape reads the same row and shows it
once. The read happens on a scrape, in a thread, at most every ``max_age_s``
seconds per worker; a scrape waits for it ``wait_s`` at most and otherwise
gets the numbers read before. A store that cannot be read is logged and leaves
the last numbers in place (their window end says how old they are), so
``/metrics`` always answers.

The stored result is read back as the ``WindowResult`` it was
(``read_window``). A row of another shape (written by another version, or by
hand) leaves out every gauge read from it, logged once per window; the window's
end and labelled count come from the row's own columns and stay. A value that
is not a finite number, or a flag that is not a bool, leaves its one gauge out.
Every gauge carries the window's ``version``, ``window`` and ``clock``, so a
series never mixes windows of different lengths.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from datetime import datetime

from setpoint.monitor.results import WindowResult, read_window
from setpoint.registry.stored_windows import StoredWindow, latest_window
from setpoint.serve.counters import Labels, sample_line
from setpoint.store.db import Database

__all__ = ["MONITOR_FAMILIES", "MonitorGauges", "render_window"]

log = logging.getLogger("setpoint.serve")

MONITOR_FAMILIES: dict[str, str] = {
    "setpoint_monitor_window_end_timestamp_seconds": "End of the latest monitored window.",
    "setpoint_monitor_labels": "Predictions of that window with their true label.",
    "setpoint_monitor_drift_share": "Share of feature importance that drifted in that window.",
    "setpoint_monitor_dataset_drift": "1 when that window drifted as a whole, else 0.",
    "setpoint_feature_psi": "Population stability index of each feature against the reference "
    "(every feature has one; higher is more drift).",
    "setpoint_feature_drifted": "1 when the feature drifted in that window, else 0.",
    "setpoint_monitor_metric_realized": "Metric on that window's labelled predictions.",
    "setpoint_monitor_metric_estimated": "Metric estimated from that window's scores (CBPE).",
}


# The fields are typed, but reading JSON back checks only what it converts (floats,
# datetimes, enums): a text or a flag is kept as stored, so each is checked here.
def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        return None
    return number if math.isfinite(number) else None


def _flag(value: object) -> float | None:
    return float(value) if isinstance(value, bool) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def render_window(stored: StoredWindow | None) -> str:
    """The gauges of ``stored`` in the Prometheus text format; empty when None."""
    return "" if stored is None else _render(stored, read_window(stored.result))


def _render(stored: StoredWindow, window: WindowResult | None) -> str:
    """The gauges of ``stored``, whose result reads as ``window`` (None: it does not)."""
    base: Labels = (
        ("version", str(stored.version)),
        ("window", stored.window),
        ("clock", stored.clock),
    )
    samples: dict[str, dict[Labels, float]] = {family: {} for family in MONITOR_FAMILIES}

    def put(family: str, value: float | None, labels: Labels = ()) -> None:
        # the first wins: a name given twice must not make a duplicate series, which
        # would fail the whole scrape
        if value is not None:
            samples[family].setdefault((*base, *labels), value)

    put("setpoint_monitor_window_end_timestamp_seconds", stored.end.timestamp())
    put("setpoint_monitor_labels", float(stored.n_labelled))
    if window is not None:
        _put_window(window, put)
    lines: list[str] = []
    for family, help_text in MONITOR_FAMILIES.items():
        if samples[family]:
            lines += [f"# HELP {family} {help_text}", f"# TYPE {family} gauge"]
            lines += [sample_line(family, lb, value) for lb, value in samples[family].items()]
    return "\n".join(lines) + "\n" if lines else ""


def _put_window(window: WindowResult, put: Callable[[str, float | None, Labels], None]) -> None:
    """Put what the window's result says: its drift, each feature's, the metrics."""
    put("setpoint_monitor_drift_share", _number(window.drift.drift_share), ())
    put("setpoint_monitor_dataset_drift", _flag(window.drift.drifted), ())
    for feature in window.drift.features:
        name = _text(feature.name)
        if name is None:
            continue
        labels: Labels = (("feature", name),)
        # PSI rather than the deciding test's number: one scale, one direction for every
        # feature, where p-values and distances point opposite ways
        put("setpoint_feature_psi", _number(feature.psi), labels)
        put("setpoint_feature_drifted", _flag(feature.drifted), labels)
    realized = {} if window.realized is None else window.realized.metrics
    for name, value in realized.items():
        put("setpoint_monitor_metric_realized", _number(value.value), (("metric", str(name)),))
    estimated = {} if window.estimate is None else window.estimate.metrics
    for name, guess in estimated.items():
        put("setpoint_monitor_metric_estimated", _number(guess.value), (("metric", str(name)),))


class MonitorGauges:
    """The latest monitored window of ``project`` as gauges, read at most every ``max_age_s``."""

    def __init__(
        self, db: Database, *, project: str, max_age_s: float = 10.0, wait_s: float = 1.0
    ) -> None:
        self.db = db
        self.project = project
        self.max_age_s = max_age_s
        self.wait_s = wait_s
        self._text = ""
        self._read_at = -math.inf
        self._reading: asyncio.Task[None] | None = None
        self._failing = False
        self._unreadable: tuple[int, str, str, datetime] | None = None  # the window last warned of

    async def render(self) -> str:
        """The gauges' text, refreshed first when older than ``max_age_s``."""
        now = time.monotonic()
        if self._reading is None and now - self._read_at >= self.max_age_s:
            # counted from the start of a read, so a failing store is tried once per period
            self._read_at = now
            self._reading = asyncio.create_task(self._refresh())
        if self._reading is not None:
            # shielded: a scrape that gives up (or is cancelled) leaves the read running
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._reading), self.wait_s)
        return self._text

    async def _refresh(self) -> None:
        try:
            stored = await asyncio.to_thread(latest_window, self.db, project=self.project)
            self._text = "" if stored is None else _render(stored, self._read(stored))
            self._failing = False
        except Exception as exc:  # any failure: /metrics must still answer with the rest
            # the traceback once per run of failures, not every period
            log.warning(
                "cannot read the latest monitored window of %r (%s); /metrics keeps the "
                "last one read",
                self.project,
                exc,
                exc_info=not self._failing,
            )
            self._failing = True
        finally:
            self._reading = None

    def _read(self, stored: StoredWindow) -> WindowResult | None:
        window = read_window(stored.result)
        key = (stored.version, stored.window, stored.clock, stored.start)
        if window is None and key != self._unreadable:  # once per window, not every period
            log.warning(
                "the stored result of %r@%d's %s window from %s is of another shape; "
                "/metrics shows only its end and labels",
                self.project,
                stored.version,
                stored.window,
                stored.start.isoformat(),
            )
            self._unreadable = key
        return window
