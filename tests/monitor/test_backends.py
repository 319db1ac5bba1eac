"""``monitor_project`` on each metadata backend: the log it reads and the windows it keeps.

On SQLite the log is the local segment log; on PostgreSQL it is the
``predictions`` table, as ``setpoint serve`` writes it there. Either way the
windows computed are stored in that backend and read back by the next run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from _support.serving import build_project, records
from setpoint.monitor.runner import monitor_project
from setpoint.project import Project
from setpoint.registry.feedback import record_feedback
from setpoint.registry.stored_windows import load_windows
from setpoint.traffic.db_log import DatabasePredictionLog
from setpoint.traffic.local_log import LocalPredictionLog

START = datetime(2024, 1, 1, tzinfo=UTC)


def test_monitor_reads_the_log_and_keeps_windows_on_each_backend(
    db_url: str,
    store_env: dict[str, str],
    flight_events: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in store_env.items():
        monkeypatch.setenv(key, value)
    frame = flight_events
    root = tmp_path / "flights"
    build_project(root, frame.iloc[:3000])
    project = Project.open(root)
    try:
        _monitor_twice(project, db_url, frame)
    finally:
        project.store.db.dispose()  # PostgreSQL connections must not outlive the test


def _monitor_twice(project: Project, db_url: str, frame: pd.DataFrame) -> None:
    assert project.store.db.url.startswith(db_url.split("+")[0].split(":")[0])

    recent = frame.iloc[-600:].reset_index(drop=True)
    recs = records(recent, len(recent))
    model = project.load_model(1)
    scores = np.asarray(model.predict_scores(recent.drop(columns=["late"])))
    rows: list[dict[str, Any]] = [
        {
            "request_id": f"r{i}",
            "index": 0,
            "entity_id": rec["flight_id"],
            "time": START + timedelta(hours=i),  # 600 hours: four weekly windows
            "model_version": "1",
            "role": "champion",
            "inputs": rec,
            "output": {"label": bool(s >= model.threshold_value), "score": float(s)},
            "latency_ms": 1.0,
        }
        for i, (rec, s) in enumerate(zip(recs, scores, strict=True))
    ]
    if db_url.startswith("postgresql"):
        with DatabasePredictionLog(project.store.db, project="flights") as plog:
            plog.append_many(rows)
    else:
        with LocalPredictionLog(project.store.home / "predictions" / "flights" / "w0") as plog:
            plog.append_many(rows)
    labels = [int(v) for v in recent["late"]]
    record_feedback(
        project.store.db,
        project="flights",
        items=[{"request_id": f"r{i}", "label": labels[i]} for i in range(300)],
    )

    first = monitor_project(project, window="1w", clock="served")
    assert sum(w.n for w in first.windows) == len(rows)
    assert sum(w.n_labelled for w in first.windows) == 300
    assert first.reused == 0
    stored = load_windows(project.store.db, project="flights", version=1, window="1w")
    assert [s.start for s in stored] == [w.start for w in first.windows]

    again = monitor_project(project, window="1w", clock="served")
    assert again.reused == len(first.windows)
    assert [w.to_dict() for w in again.windows] == [w.to_dict() for w in first.windows]
