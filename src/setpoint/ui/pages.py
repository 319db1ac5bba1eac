"""What each dashboard page shows, read from the store: plain dicts for the templates.

Nothing here renders HTML or knows HTTP. Each function reads one page's data
in a few queries, so that a page stays well under its 300 ms of server time
whatever the history: monitoring reads the stored windows (``setpoint monitor``
computed them), never the prediction log. A stored window is read as the
``WindowResult`` it was (``read_window``); one of another shape shows its
counts and no numbers. A version's metrics are read through ``ModelVersion``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from setpoint.errors import NotFoundError
from setpoint.monitor.results import WindowResult, read_window
from setpoint.project import Project
from setpoint.registry import aliases as alias_ops
from setpoint.registry import jobs
from setpoint.registry.events import ALERT_EVENT, list_events
from setpoint.registry.models import get_version
from setpoint.registry.projects import list_projects
from setpoint.registry.quarantine import list_quarantine, quarantine_counts
from setpoint.registry.stored_windows import load_windows
from setpoint.stats.cbpe import MetricEstimate
from setpoint.stats.performance import MetricValue

__all__ = [
    "events_page",
    "model_page",
    "monitoring_page",
    "overview_page",
    "quality_page",
    "store_projects",
]


def _realized(window: WindowResult | None, name: str) -> MetricValue | None:
    if window is None or window.realized is None:
        return None
    return window.realized.metrics.get(name)


def _estimated(window: WindowResult | None, name: str) -> MetricEstimate | None:
    if window is None or window.estimate is None:
        return None
    return window.estimate.metrics.get(name)


def overview_page(project: Project) -> dict[str, Any]:
    """The project's champion, its latest window against the setpoint, the loop's last step."""
    db, name, spec = project.store.db, project.name, project.spec
    aliases = alias_ops.list_aliases(db, project=name)
    champion = aliases.get("champion")
    version = get_version(project.store, project=name, version=champion) if champion else None
    windows = load_windows(db, project=name)
    latest = windows[-1] if windows else None
    result = None if latest is None else read_window(latest.result)
    realized = _realized(result, spec.metric)
    retrains = [job for job in jobs.list_jobs(db, project=name, limit=20) if job.kind == "retrain"]
    alerts = list_events(db, project=name, kind=ALERT_EVENT, limit=10)
    return {
        "metric": spec.metric,
        "setpoint": spec.monitoring.setpoint,
        "higher_is_better": spec.higher_is_better,
        "aliases": aliases,
        "champion": champion,
        "test": None if version is None else version.test_metric(spec.metric),
        "window": None
        if latest is None
        else {
            "start": latest.start,
            "end": latest.end,
            "n": latest.n,
            "labelled": latest.n_labelled,
            "version": latest.version,
            "realized": realized,
            "estimated": _estimated(result, spec.metric),
            "drift_share": None if result is None else result.drift.drift_share,
            "drifted": None if result is None else result.drift.drifted,
            "drifted_features": []
            if result is None
            else list(result.top_drifted(len(result.drift.features))),
        },
        "below_setpoint": _below(realized, spec.monitoring.setpoint, spec.higher_is_better),
        "last_retrain": retrains[0] if retrains else None,
        "alerts": alerts,
        "autopilot": spec.autopilot is not None,
        "projects": store_projects(project),
        "versions": [
            {
                "version": v.version,
                "created_at": v.created_at,
                "test": v.test_metric(spec.metric),
                "aliases": [a for a, n in aliases.items() if n == v.version],
                "source": "autopilot" if "autopilot" in v.lineage else "train",
            }
            for v in reversed(project.versions())
        ],
    }


def store_projects(project: Project) -> list[dict[str, Any]]:
    """Every project in the store beside this one: its champion, latest window and loop.

    Only the served project's spec is known here, so the others show what the
    store alone says (their metric is named in their stored windows).
    """
    db = project.store.db
    found: list[dict[str, Any]] = []
    for name in list_projects(db):
        windows = load_windows(db, project=name)
        latest = windows[-1] if windows else None
        result = None if latest is None else read_window(latest.result)
        realized = {} if result is None or result.realized is None else result.realized.metrics
        retrains = [j for j in jobs.list_jobs(db, project=name, limit=5) if j.kind == "retrain"]
        found.append(
            {
                "name": name,
                "current": name == project.name,
                "champion": alias_ops.get_alias(db, project=name, alias="champion"),
                "window_end": None if latest is None else latest.end,
                "realized": {k: m.value for k, m in realized.items()},
                "drifted": None if result is None else result.drift.drifted,
                "last_retrain": retrains[0].created_at if retrains else None,
                "alerts": len(list_events(db, project=name, kind=ALERT_EVENT, limit=1000)),
            }
        )
    return found


def _below(realized: MetricValue | None, level: float | None, higher: bool) -> bool | None:
    if realized is None or level is None or realized.value is None:
        return None
    return realized.value < level if higher else realized.value > level


def model_page(project: Project, version: int) -> dict[str, Any]:
    """One version: lineage, metrics per slice and segment, gate decisions, alias moves."""
    found = get_version(project.store, project=project.name, version=version)
    decisions = [
        e
        for e in list_events(
            project.store.db, project=project.name, kind="gate_decision", limit=500
        )
        if e.payload.get("challenger") == version
    ]
    history = [
        change
        for change in alias_ops.alias_history_of(project.store.db, project=project.name)
        if version in (change.version, change.previous_version)
    ]
    aliases = [
        alias
        for alias, number in alias_ops.list_aliases(project.store.db, project=project.name).items()
        if number == version
    ]
    lineage = dict(found.lineage)
    segments = found.metrics.get("segments", {})
    metric = project.spec.metric
    weakest = sorted(
        (
            (row["metrics"][metric], column, row["segment"], row["n"])
            for column, rows in segments.items()
            for row in rows
            if isinstance(row.get("metrics", {}).get(metric), int | float)
            and row.get("n", 0) >= project.spec.gate.min_segment_rows
        ),
        reverse=not project.spec.higher_is_better,
    )[:3]
    return {
        "card": {
            "task": project.spec.task.value,
            "target": project.spec.target,
            "family": lineage.get("recipe", {}).get("family"),
            "calibration": lineage.get("recipe", {}).get("calibration"),
            "split": lineage.get("split", {}),
            "test": found.test_metric(metric),
            "weakest": weakest,
        },
        "version": found,
        "aliases": aliases,
        "slices": found.slices,
        "segments": found.metrics.get("segments", {}),
        "decisions": decisions,
        "history": history,
        "dataset": lineage.get("dataset", {}),
        "features": lineage.get("features", {}),
        "autopilot": lineage.get("autopilot"),
        "packages": lineage.get("packages", {}),
        "code": lineage.get("code", {}),
        "metric": project.spec.metric,
    }


def monitoring_page(project: Project) -> dict[str, Any]:
    """Every stored window, oldest first: drift per feature and the metric over time."""
    windows = load_windows(project.store.db, project=project.name)
    if not windows:
        raise NotFoundError(
            kind="monitoring window",
            name=project.name,
            hint="Run 'setpoint monitor' after some traffic; it stores the windows shown here.",
        )
    # One window size and clock: the most recent run's.
    last = windows[-1]
    chosen = [w for w in windows if (w.window, w.clock) == (last.window, last.clock)]
    results = [read_window(w.result) for w in chosen]
    features: list[str] = []
    for result in results:
        for item in () if result is None else result.drift.features:
            if item.name not in features:
                features.append(item.name)
    # Each cell as JSON: the page's script shows it when the cell is clicked.
    cells: dict[str, list[dict[str, Any] | None]] = {name: [] for name in features}
    for result in results:
        drift = () if result is None else result.drift.features
        by_name = {f.name: f.to_dict() for f in reversed(drift)}  # the first of a name wins
        for name in features:
            cells[name].append(by_name.get(name))
    metric = project.spec.metric
    return {
        "metric": metric,
        "setpoint": project.spec.monitoring.setpoint,
        "window": last.window,
        "clock": last.clock,
        "windows": chosen,
        "features": features,
        "cells": cells,
        "realized": [_realized(r, metric) for r in results],
        "estimated": [_estimated(r, metric) for r in results],
    }


def events_page(project: Project, *, kind: str | None = None, limit: int = 200) -> dict[str, Any]:
    events = list_events(project.store.db, project=project.name, kind=kind, limit=limit)
    kinds = Counter(e.kind for e in events)
    return {"events": events, "kinds": dict(sorted(kinds.items())), "kind": kind}


def quality_page(project: Project, *, examples: int = 20) -> dict[str, Any]:
    counts = quarantine_counts(project.store, project=project.name)
    rows = list_quarantine(project.store, project=project.name, limit=examples)
    return {
        "counts": dict(sorted(counts.items(), key=lambda item: -item[1])),
        "columns": list(rows.columns),
        "rows": rows.astype(object).where(rows.notna(), None).to_dict("records"),
        "total": sum(counts.values()),
    }
