"""``setpoint quickstart``: a real project, end to end, on the flights of 2013."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from setpoint._console import console, err_console, fmt, progress_bar, table
from setpoint.config.loader import SPEC_FILE, dump_spec
from setpoint.config.policy import AutopilotPolicy, MetricTrigger, TriggerSpec
from setpoint.config.spec import FeatureSpec, ModelRecipe, ProjectSpec, SplitSpec, Task
from setpoint.errors import BatchRefusedError
from setpoint.project import Project, TrainOutcome
from setpoint.quickstart.flights import WEATHER_COLUMNS, flight_events
from setpoint.store.workspace import Store

__all__ = ["TRAIN_MONTHS", "quickstart_spec", "run_quickstart"]

TRAIN_MONTHS = range(1, 8)  # January-July are ingested; August-December stay unseen.
TEST_FROM = "2013-07-01T00:00:00-04:00"  # midnight in New York

# Physical limits, so that summer weather is not flagged against January's range.
_RANGES = {
    "distance": (0, 6000),
    "sched_dep_hour": (0, 23),
    "sched_arr_time": (0, 2400),
    "day_of_week": (0, 6),
    "temp": (-40, 130),
    "dewp": (-60, 90),
    "humid": (0, 100),
    "wind_dir": (0, 360),
    "wind_speed": (0, 100),
    "wind_gust": (0, 150),
    "precip": (0, 10),
    "pressure": (900, 1100),
    "visib": (0, 10),
}


def quickstart_spec() -> ProjectSpec:
    return ProjectSpec(
        project="flights",
        task=Task.BINARY,
        target="late",
        timestamp="scheduled_at",
        entity="flight_id",
        features={
            # Instruments drop readings now and then: a null is not an anomaly.
            name: FeatureSpec(type="numeric", min=low, max=high, nullable=name in WEATHER_COLUMNS)
            for name, (low, high) in _RANGES.items()
        },
        segments=["carrier", "origin"],
        metric="pr_auc",
        model=ModelRecipe(split=SplitSpec(test_from=TEST_FROM, valid_fraction=0.15)),
        autopilot=AutopilotPolicy(
            # Retrain when the live PR-AUC falls 0.03 under what the model's own scores
            # promise for the same flights: the share of late flights swings from week to
            # week, and the estimate swings with it, so the gap is the model's own fault.
            triggers=TriggerSpec(
                realized=MetricTrigger(max_drop=0.03, baseline="estimated", min_labels=2000)
            ),
            cooldown=timedelta(days=21),
        ),
    )


def run_quickstart(directory: Path) -> TrainOutcome:
    """Build, train and promote the flights project in ``directory``; print a summary."""
    started = time.perf_counter()
    directory.mkdir(parents=True, exist_ok=True)
    spec = quickstart_spec()
    (directory / SPEC_FILE).write_text(dump_spec(spec), encoding="utf-8")
    project = Project(spec, Store.open(directory), root=directory)

    with console.status("Reading the NYC flights 2013 data (checked by sha256)..."):
        events = flight_events(cache=project.store.home / "cache")
    months = events["scheduled_at"].dt.tz_convert("America/New_York").dt.month
    unseen = events[months > max(TRAIN_MONTHS)]
    holdout_path = directory / "data" / "flights-2013-08-12.parquet"
    holdout_path.parent.mkdir(exist_ok=True)
    unseen.to_parquet(holdout_path, index=False)

    ingested: list[dict[str, Any]] = []
    with progress_bar("ingesting") as update:
        for i, month in enumerate(TRAIN_MONTHS):
            update(f"ingesting 2013-{month:02d}", i / len(TRAIN_MONTHS))
            batch = events[months == month].reset_index(drop=True)
            try:
                result = project.ingest(batch, name="events")
            except BatchRefusedError as exc:
                err_console.print(f"[yellow]2013-{month:02d} refused:[/] {exc}")
                continue
            ingested.append(
                {
                    "month": f"2013-{month:02d}",
                    "rows": len(batch),
                    "stored": result.dataset.n_rows,
                    "quarantined": result.dataset.n_quarantined,
                    "anomalies": result.report.counts if result.report else {},
                    "new": result.created,
                }
            )
    with progress_bar("training") as update:
        outcome = project.train(dataset="events", progress=update)

    _print_summary(project, outcome, ingested, unseen_rows=len(unseen), holdout=holdout_path)
    console.print(f"Done in {time.perf_counter() - started:.0f} s.")
    return outcome


def _print_summary(
    project: Project,
    outcome: TrainOutcome,
    ingested: list[dict[str, Any]],
    *,
    unseen_rows: int,
    holdout: Path,
) -> None:
    rows = [
        (
            b["month"],
            b["rows"],
            b["stored"],
            b["quarantined"],
            ", ".join(f"{k}: {v}" for k, v in b["anomalies"].items() if v) or "-",
        )
        for b in ingested
    ]
    console.print(table("Ingested", ["month", "rows", "stored", "quarantined", "anomalies"], rows))

    metrics = outcome.result.metrics
    shown = ["roc_auc", "pr_auc", "log_loss", "brier", "recall_at_precision", "f1"]
    metric_rows = [(m, *(metrics[s].get(m) for s in metrics)) for m in shown]
    console.print(table("Metrics (test = July 2013)", ["metric", *metrics], metric_rows))

    by_carrier = outcome.result.segment_metrics.get("carrier", [])
    carrier_rows = [
        (
            s["segment"],
            s["n"],
            s.get("positives"),
            s["metrics"].get("pr_auc"),
            s["metrics"].get("roc_auc"),
        )
        for s in by_carrier
    ]
    console.print(
        table("July by carrier", ["carrier", "flights", "late", "pr_auc", "roc_auc"], carrier_rows)
    )

    decision = outcome.decision
    verdict = "champion" if decision.passed else "challenger (gate not passed)"
    test_pr_auc = metrics.get("test", {}).get("pr_auc")
    console.print(
        f"Model {project.name}@{outcome.version.version} is {verdict}. "
        f"July PR-AUC: {fmt(test_pr_auc)}"
    )
    for reason in decision.reasons:
        console.print(f"  - {reason}")
    where = project.store.describe()
    console.print(
        table(
            "Where everything is",
            ["what", "where"],
            [
                ("spec", str(project.root / SPEC_FILE)),
                ("metadata", where["metadata"]),
                ("artifacts", where["artifacts"]),
                ("unseen Aug-Dec flights", f"{holdout} ({unseen_rows:,} rows)"),
            ],
        )
    )
    console.print(
        f"Next: setpoint model list -C {project.root}   setpoint data quarantine -C {project.root}"
    )
