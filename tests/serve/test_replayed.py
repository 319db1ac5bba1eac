"""`setpoint replay` against a real `setpoint serve`: what the store holds afterwards.

The command line and the engine are tested against a stand-in server in
tests/cli/test_traffic.py and tests/traffic/; this is the one end-to-end run:
the columns come from the project's real setpoint.yaml, and the prediction log
and the feedback table are read back from the store the server wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from _support.cli import run as setpoint
from _support.serving import serving
from setpoint.project import Project
from setpoint.registry.feedback import list_feedback
from setpoint.traffic.log import read_log


def test_replay_logs_every_record_and_stores_every_outcome(
    project_dir: Path, flights: pd.DataFrame, tmp_path: Path
) -> None:
    held = flights.iloc[-120:].sample(frac=1, random_state=5)  # out of time order
    path = tmp_path / "held-back.parquet"
    held.to_parquet(path, index=False)
    with serving(project_dir) as server:
        result = setpoint(
            "replay",
            "-C",
            str(project_dir),
            "--file",
            str(path),
            "--rate",
            "0",
            "--batch",
            "7",
            "--label-delay",
            "1h",
            "--url",
            server.url,
            cwd=tmp_path,
        )
    assert result.returncode == 0, result.stderr + server.log()
    assert "Replaying 120 records" in result.stdout
    assert "errors:" not in result.stdout

    project = Project.open(project_dir)
    try:
        logged = read_log(project.store, project="flights").to_pylist()
        outcomes = list_feedback(project.store.db, project="flights")
    finally:
        project.store.db.dispose()
    truth = dict(zip(held.flight_id, held.late.astype(bool), strict=True))
    times = dict(zip(held.flight_id, held.scheduled_at, strict=True))
    # Every record was scored and logged once, with its entity id and its own time
    # (the log's "time" is when it was served; the record's is in its inputs).
    assert sorted(row["entity_id"] for row in logged) == sorted(truth)
    sent = {row["entity_id"]: json.loads(row["inputs"]) for row in logged}
    assert all(pd.Timestamp(sent[f]["scheduled_at"]) == times[f] for f in truth)
    assert not any("late" in inputs for inputs in sent.values())  # the outcome is not sent
    # Every outcome was stored once, on the prediction it belongs to, due an hour later.
    entity = {(row["request_id"], row["index"]): row["entity_id"] for row in logged}
    assert len(outcomes) == 120
    for outcome in outcomes:
        flight = entity[(outcome.request_id, outcome.index)]
        assert outcome.label is truth[flight]
        assert outcome.event_time == times[flight] + pd.Timedelta(hours=1)
