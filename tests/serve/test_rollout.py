"""Shadow and canary on a real server: who answers, what is logged, when a canary is pulled."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pandas as pd
import pytest

from _support.serving import ServerProcess, records, serving, set_serving
from setpoint.project import Project
from setpoint.registry.aliases import AliasKind, alias_history_of, kind_by_hand, set_alias
from setpoint.traffic.local_log import LocalPredictionLog

pytestmark = pytest.mark.slow


def point(project: Project, alias: str, version: int | None) -> None:
    with project.store.db.write() as conn:
        set_alias(
            conn,
            project="flights",
            alias=alias,
            version=version,
            kind=kind_by_hand(alias, version),
            reason="test",
            actor="test",
        )


def wait_for_version(http: httpx.Client, role: str, version: int | None) -> None:
    deadline = time.monotonic() + 60
    while True:
        serving_now = http.get("/v1/models").json()["serving"]
        current = serving_now[role] and serving_now[role]["version"]
        if current == version:
            return
        assert time.monotonic() < deadline, serving_now
        time.sleep(0.1)


def predict(http: httpx.Client, flights: pd.DataFrame, i: int) -> httpx.Response:
    response = http.post("/v1/predict", json={"records": records(flights, 1, start=i)})
    assert response.status_code == 200, response.text
    return response


def shadow_count(http: httpx.Client) -> float:
    """Records the shadow has scored and logged, from /metrics."""
    prefix = 'setpoint_predictions_total{role="shadow"'
    lines = http.get("/metrics").text.splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(prefix))


@contextmanager
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    """One client (and its connection) for a test's requests, as an application keeps one."""
    with httpx.Client(base_url=server.url, timeout=10) as http:
        yield http


def test_shadow_is_logged_never_returned(project_dir: Path, flights: pd.DataFrame) -> None:
    project = Project.open(project_dir)
    with serving(project_dir) as server, client(server) as http:
        point(project, "shadow", 2)
        wait_for_version(http, "shadow", 2)
        answers = [predict(http, flights, i).json() for i in range(30)]
        assert {a["model_version"] for a in answers} == {1}
        # Shadow rows are written after the answer; each is counted once it is in the log.
        deadline = time.monotonic() + 60
        while shadow_count(http) < len(answers):
            assert time.monotonic() < deadline, shadow_count(http)
            time.sleep(0.05)
        server.kill()
    with LocalPredictionLog(project_dir / ".setpoint" / "predictions" / "flights" / "w0") as plog:
        rows = plog.read().to_pylist()
    by_role = {(r["request_id"], r["role"]): r for r in rows}
    for answer in answers:
        champion = by_role[(answer["request_id"], "champion")]
        shadow = by_role[(answer["request_id"], "shadow")]
        assert (champion["model_version"], shadow["model_version"]) == ("1", "2")
        assert champion["inputs"] == shadow["inputs"]
    # the two models really differ, so the shadow's outputs are its own
    assert any(
        json.loads(by_role[(a["request_id"], "shadow")]["output"])["score"]
        != a["predictions"][0]["score"]
        for a in answers
    )


def test_canary_takes_a_sticky_share(project_dir: Path, flights: pd.DataFrame) -> None:
    set_serving(project_dir, canary={"share": 0.3, "max_p99_ms": 10_000, "min_requests": 5})
    project = Project.open(project_dir)
    with serving(project_dir) as server, client(server) as http:
        point(project, "canary", 2)
        wait_for_version(http, "canary", 2)
        first = [predict(http, flights, i).json()["model_version"] for i in range(200)]
        again = [predict(http, flights, i).json()["model_version"] for i in range(200)]
    assert first == again  # the same flight always meets the same model
    share = first.count(2) / len(first)
    assert 0.15 < share < 0.45, share


def test_a_canary_that_breaks_the_policy_is_pulled(
    project_dir: Path, flights: pd.DataFrame
) -> None:
    # No model answers in a microsecond: the latency rule must trip.
    set_serving(project_dir, canary={"share": 0.5, "max_p99_ms": 0.001, "min_requests": 10})
    project = Project.open(project_dir)
    with serving(project_dir) as server, client(server) as http:
        point(project, "canary", 2)
        wait_for_version(http, "canary", 2)
        versions = [predict(http, flights, i).json()["model_version"] for i in range(200)]
        wait_for_version(http, "canary", None)
        after = [predict(http, flights, i).json()["model_version"] for i in range(200, 260)]
    assert versions.count(2) == 10  # exactly min_requests, then it was pulled at once
    assert set(after) == {1}
    assert project.aliases().get("canary") is None
    [event] = project.events(kind="canary_rollback")
    assert event.payload["version"] == 2
    assert event.payload["requests"] == 10
    assert "p99 latency" in event.payload["reason"]
    pulled = alias_history_of(project.store.db, project="flights", alias="canary")[-1]
    assert (pulled.kind, pulled.version, pulled.actor) == (AliasKind.CANARY_PULLED, None, "server")
    assert pulled.reason == event.payload["reason"]  # the guard's words, no prefix
