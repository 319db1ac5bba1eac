"""Gauges of the latest monitored window, read from the metadata store for ``/metrics``.

The numbers come from the store that every worker shares, not from a worker's
own counting, so they never go into the per-worker snapshots that ``/metrics``
adds up: whichever worker answers a scrape reads the same row and shows it
once. The read happens on a scrape, in a thread, at most every ``max_age_s``
seconds per worker; a scrape waits for it ``wait_s`` at most and otherwise
gets the numbers read before. A store that cannot be read is logged and leaves
the last numbers in place (their window end says how old they are), so
``/metrics`` always answers.

The stored result is read defensively: a key that is missing or of another type
means that gauge is absent. Every gauge carries the window's ``version``,
``window`` and ``clock``, so a series never mixes windows of different lengths.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import Any

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


def _get(doc: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        return None
    return number if math.isfinite(number) else None


def _flag(value: Any) -> float | None:
    return float(value) if isinstance(value, bool) else None


def render_window(stored: StoredWindow | None) -> str:
    """The gauges of ``stored`` in the Prometheus text format; empty when None."""
    if stored is None:
        return ""
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
    drift = _get(stored.result, "drift")
    put("setpoint_monitor_drift_share", _number(_get(drift, "drift_share")))
    put("setpoint_monitor_dataset_drift", _flag(_get(drift, "drifted")))
    features = _get(drift, "features")
    for feature in features if isinstance(features, list) else []:
        name = _get(feature, "name")
        if not isinstance(name, str):
            continue
        labels: Labels = (("feature", name),)
        # PSI rather than the deciding test's number: one scale, one direction for every
        # feature, where p-values and distances point opposite ways
        put("setpoint_feature_psi", _number(_get(feature, "psi")), labels)
        put("setpoint_feature_drifted", _flag(_get(feature, "drifted")), labels)
    for family, section in (
        ("setpoint_monitor_metric_realized", "realized"),
        ("setpoint_monitor_metric_estimated", "estimate"),
    ):
        metrics = _get(stored.result, section, "metrics")
        for name, metric in metrics.items() if isinstance(metrics, dict) else []:
            put(family, _number(_get(metric, "value")), (("metric", str(name)),))
    lines: list[str] = []
    for family, help_text in MONITOR_FAMILIES.items():
        if samples[family]:
            lines += [f"# HELP {family} {help_text}", f"# TYPE {family} gauge"]
            lines += [sample_line(family, lb, value) for lb, value in samples[family].items()]
    return "\n".join(lines) + "\n" if lines else ""


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
            self._text = render_window(stored)
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
