"""``setpoint.Client`` and ``setpoint replay`` against a real ``setpoint serve``.

The client and the command line are tested against a stand-in server in
tests/test_client.py, tests/cli/test_traffic.py and tests/traffic/; this is the
one end-to-end run, on one server: the client's calls, then a replay whose
columns come from the project's real setpoint.yaml, and the prediction log and
the feedback table read back from the store the server wrote.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from _support.cli import run as setpoint
from _support.serving import records, serving
from setpoint import Client, PredictResponse
from setpoint.project import Project
from setpoint.registry.feedback import list_feedback
from setpoint.traffic.log import read_log

REPLAYED = 300


def _use_the_client(url: str, flights: pd.DataFrame) -> tuple[PredictResponse, PredictResponse]:
    """One record, then a batch that starts with it; their outcomes, posted twice."""
    with Client(url) as client:
        assert client.ready()
        models = client.models()
        assert models["project"] == "flights"
        assert models["serving"]["champion"]["version"] == 1
        assert [v["version"] for v in models["versions"]] == [1, 2]

        batch_records = records(flights, 5)
        one = client.predict(batch_records[0])
        batch = client.predict(batch_records, client_request_id="client-batch-1")
        assert one.model_version == batch.model_version == 1
        assert len(one.predictions) == 1
        # The server names the request; the client's id comes back beside it.
        assert batch.client_request_id == "client-batch-1" != batch.request_id
        assert len(batch.predictions) == 5
        # The same record scores the same alone and in a batch.
        assert batch.predictions[0] == one.predictions[0]
        assert all(0 <= p["score"] <= 1 for p in batch.predictions)

        outcomes: list[dict[str, Any]] = [{"request_id": one.request_id, "label": True}]
        outcomes += [
            {"request_id": batch.request_id, "index": i, "label": bool(i % 2)} for i in range(4)
        ]
        # The fifth by its entity id, the other way the API names a prediction.
        outcomes.append({"entity_id": batch_records[4]["flight_id"], "label": False})
        nothing_refused = {"conflicts": [], "rejected": []}
        assert client.feedback(outcomes) == {"stored": 6, "duplicates": 0, **nothing_refused}
        retried = client.feedback(outcomes)  # a retry is a no-op
        assert retried == {"stored": 0, "duplicates": 6, **nothing_refused}
    return one, batch


def test_the_client_and_a_replay_are_logged_and_their_outcomes_stored(
    project_dir: Path, flights: pd.DataFrame, tmp_path: Path
) -> None:
    # The replayed flights are the last ones, the client's the first: no flight is in both.
    held = flights.iloc[-REPLAYED:].sample(frac=1, random_state=5)  # out of time order
    path = tmp_path / "held-back.parquet"
    held.to_parquet(path, index=False)
    with serving(project_dir) as server:
        one, batch = _use_the_client(server.url, flights)
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
    assert f"Replaying {REPLAYED} records" in result.stdout
    assert "errors:" not in result.stdout

    project = Project.open(project_dir)
    try:
        logged = read_log(project.store, project="flights").to_pylist()
        outcomes = list_feedback(project.store.db, project="flights")
    finally:
        project.store.db.dispose()

    # The client's six predictions are logged as it received them.
    answered = {(one.request_id, 0): one.predictions[0]}
    answered |= {(batch.request_id, i): p for i, p in enumerate(batch.predictions)}
    by_key = {(row["request_id"], row["index"]): row for row in logged}
    assert len(by_key) == len(logged)  # no prediction logged twice
    for key, prediction in answered.items():
        assert json.loads(by_key[key]["output"]) == prediction
        assert by_key[key]["model_version"] == "1"
    client_outcomes = [o for o in outcomes if o.request_id in (one.request_id, batch.request_id)]
    client_outcomes += [o for o in outcomes if o.entity_id is not None]
    assert len(client_outcomes) == 6

    replayed = [row for row in logged if (row["request_id"], row["index"]) not in answered]
    truth = dict(zip(held.flight_id, held.late.astype(bool), strict=True))
    times = dict(zip(held.flight_id, held.scheduled_at, strict=True))
    # Every replayed record was scored and logged once, with its entity id and its own
    # time (the log's "time" is when it was served; the record's is in its inputs).
    assert sorted(row["entity_id"] for row in replayed) == sorted(truth)
    sent = {row["entity_id"]: json.loads(row["inputs"]) for row in replayed}
    assert all(pd.Timestamp(sent[f]["scheduled_at"]) == times[f] for f in truth)
    assert not any("late" in inputs for inputs in sent.values())  # the outcome is not sent
    # Every outcome was stored once, on the prediction it belongs to, due an hour later.
    entity = {(row["request_id"], row["index"]): row["entity_id"] for row in replayed}
    replay_outcomes = [o for o in outcomes if (o.request_id, o.index) in entity]
    assert len(replay_outcomes) == REPLAYED
    assert len(outcomes) == REPLAYED + 6
    for outcome in replay_outcomes:
        flight = entity[(outcome.request_id, outcome.index)]
        assert outcome.label is truth[flight]
        assert outcome.event_time == times[flight] + pd.Timedelta(hours=1)
