"""Real held-out flights, scored by the real model and logged as ``setpoint serve`` logs them.

The log is a real ``LocalPredictionLog`` written with explicit times (the server
would stamp its own clock); the flights are the latest fifth of the project's
January flights, the rows its model's reference summarises.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from _support.serving import records
from setpoint.project import Project
from setpoint.registry.feedback import record_feedback
from setpoint.traffic.local_log import LocalPredictionLog

MONDAY = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday
PER_WEEK = 400


def held_out(frame: pd.DataFrame) -> pd.DataFrame:
    """The latest 20% of the flights: the rows the model's reference summarises."""
    ordered = frame.sort_values("scheduled_at").reset_index(drop=True)
    return ordered.iloc[int(len(ordered) * 0.8) :].reset_index(drop=True)


def log_rows(
    project: Project,
    rows: pd.DataFrame,
    *,
    start: datetime,
    shift: float = 0.0,
    prefix: str,
    role: str = "champion",
    version: int = 1,
) -> list[dict[str, Any]]:
    model = project.load_model(version)
    recs = records(rows, len(rows))
    for rec in recs:
        if shift and rec["temp"] is not None:
            rec["temp"] += shift
    scored = pd.DataFrame(recs).assign(temp=lambda f: pd.to_numeric(f["temp"]))
    scores = np.asarray(model.predict_scores(scored))
    step = timedelta(days=7) / len(recs)
    return [
        {
            "request_id": f"{prefix}{i}",
            "index": 0,
            "entity_id": rec["flight_id"],
            "time": start + i * step,
            "model_version": str(version),
            "role": role,
            "inputs": rec,
            "output": {"label": bool(score >= model.threshold_value), "score": float(score)},
            "latency_ms": 1.0,
        }
        for i, (rec, score) in enumerate(zip(recs, scores, strict=True))
    ]


def log_three_weeks(
    project: Project, frame: pd.DataFrame
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Log three weeks of held-out flights from MONDAY, the third 30 degrees warmer;
    the flights (in logged order) and the logged rows, request ids ``w<week>-<i>``."""
    pool = held_out(frame).sample(3 * PER_WEEK, random_state=1).reset_index(drop=True)
    rows: list[dict[str, Any]] = []
    for week in range(3):
        rows += log_rows(
            project,
            pool.iloc[week * PER_WEEK : (week + 1) * PER_WEEK],
            start=MONDAY + timedelta(days=7 * week),
            prefix=f"w{week}-",
            shift=30.0 if week == 2 else 0.0,
        )
    with LocalPredictionLog(project.store.home / "predictions" / "flights" / "w0") as plog:
        plog.append_many(rows)
    return pool, rows


def add_logged_weeks(root: Path, frame: pd.DataFrame) -> Path:
    """Log three weeks into the project at ``root`` (the third shifted); label weeks 1 and 2.

    ``frame`` is the data the project was trained on.
    """
    project = Project.open(root)
    pool, _ = log_three_weeks(project, frame)
    late = [int(v) for v in pool["late"]]
    feedback = [{"request_id": f"w0-{i}", "label": late[i]} for i in range(300)]
    feedback += [{"request_id": f"w1-{i}", "label": late[PER_WEEK + i]} for i in range(300)]
    record_feedback(project.store.db, project="flights", items=feedback)
    project.store.db.dispose()
    return root
