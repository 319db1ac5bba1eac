"""`setpoint serve` as a client sees it: a real server process on loopback.

A test that counts what a server logged, stored or measured, or that changes its
champion, starts its own (``server``); the others ask one server of the module
(``shared``), since its answers to them do not depend on what it answered before.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from _support.serving import ServerProcess, copy_project, records, serving, set_serving
from setpoint.project import Project
from setpoint.registry.api_keys import create_key
from setpoint.registry.feedback import list_feedback
from setpoint.traffic.local_log import LocalPredictionLog


@pytest.fixture
def server(project_dir: Path) -> Iterator[ServerProcess]:
    """A server of the test's own copy of the project."""
    with serving(project_dir) as running:
        yield running


@pytest.fixture(scope="module")
def shared(
    flights_project: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One server for the module's tests that neither count nor change its state."""
    root = copy_project(flights_project, tmp_path_factory.mktemp("shared") / "flights")
    with serving(root) as running:
        yield running


def post(server: ServerProcess, path: str, body: object, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=10, **kwargs)


def check_error_shape(response: httpx.Response, status: int, kind: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert {"status", "kind", "message", "request_id"} <= set(error)
    assert (error["status"], error["kind"]) == (status, kind), error
    assert isinstance(error["message"], str)
    assert error["message"]
    return dict(error)


@pytest.mark.hostile
def test_predicts_and_logs_each_before_answering_even_with_a_reused_request_id(
    server: ServerProcess, flights: pd.DataFrame, project_dir: Path
) -> None:
    one = post(
        server, "/v1/predict", {"records": records(flights, 1)}, headers={"X-Request-ID": "req-1"}
    )
    assert one.status_code == 200, one.text
    body = one.json()
    # the server names the request; the client's id is kept beside it, for tracing
    assert body["request_id"] == one.headers["x-request-id"] != "req-1"
    assert one.headers["x-client-request-id"] == "req-1"
    again = post(  # a reused client id (a retry) is another request, with its own id
        server, "/v1/predict", {"records": records(flights, 1)}, headers={"X-Request-ID": "req-1"}
    )
    assert again.status_code == 200, again.text
    assert again.json()["request_id"] not in (body["request_id"], "req-1")
    assert body["model_version"] == 1
    [prediction] = body["predictions"]
    assert 0 <= prediction["score"] <= 1
    assert prediction["label"] in (0, 1)

    batch = post(server, "/v1/predict", {"records": records(flights, 50, start=100)})
    assert batch.status_code == 200
    scores = [p["score"] for p in batch.json()["predictions"]]
    assert len(scores) == 50
    assert len(set(scores)) > 5

    # Same answers as the registered model scoring the same rows offline.
    model = Project.open(project_dir).load_model(1)
    rows = flights.iloc[100:150]
    offline = model.predict_scores({c: rows[c].to_numpy() for c in model.features})
    assert scores == pytest.approx(offline.tolist(), abs=1e-9)

    server.kill()  # the log must already hold what was answered
    with LocalPredictionLog(project_dir / ".setpoint" / "predictions" / "flights" / "w0") as plog:
        table = plog.read().to_pylist()
    assert len(table) == 52
    first = table[0]
    assert first["request_id"] == body["request_id"]
    assert first["client_request_id"] == "req-1"
    assert table[1]["request_id"] == again.json()["request_id"]
    assert table[1]["client_request_id"] == "req-1"
    assert len({row["request_id"] for row in table}) == 3  # one per request
    assert table[2]["client_request_id"] is None
    assert first["role"] == "champion"
    assert first["entity_id"] == flights.iloc[0]["flight_id"]
    assert json.loads(first["inputs"])["carrier"] == flights.iloc[0]["carrier"]
    assert json.loads(first["output"])["score"] == prediction["score"]


def test_explain_returns_contributions_that_add_up(
    shared: ServerProcess, flights: pd.DataFrame
) -> None:
    response = post(shared, "/v1/predict?explain=true", {"records": records(flights, 3)})
    assert response.status_code == 200
    for prediction in response.json()["predictions"]:
        contributions = prediction["contributions"]
        assert 1 <= len(contributions) <= 5
        sizes = [abs(c["value"]) for c in contributions]
        assert sizes == sorted(sizes, reverse=True)
        assert {c["feature"] for c in contributions} <= set(flights.columns)
    check_error_shape(
        post(shared, "/v1/predict?explain=maybe", {"records": records(flights, 1)}),
        400,
        "invalid_request",
    )


def test_bad_records_get_422_naming_every_bad_field(
    shared: ServerProcess, flights: pd.DataFrame
) -> None:
    bad = records(flights, 3)
    bad[0]["temp"] = 1e6
    bad[1]["carrier"] = ["UA"]
    del bad[2]["distance"]
    bad[2]["wind_speed"] = "NaN"
    error = check_error_shape(post(shared, "/v1/predict", {"records": bad}), 422, "invalid_request")
    found = {(e["record"], e["field"], e["kind"]) for e in error["errors"]}
    assert found == {
        (0, "temp", "out_of_range"),
        (1, "carrier", "type_mismatch"),
        (2, "distance", "missing_feature"),
        (2, "wind_speed", "non_finite"),
    }


@pytest.mark.hostile
@pytest.mark.parametrize(
    ("content", "headers", "status", "kind"),
    [
        (b"{not json", {"content-type": "application/json"}, 400, "malformed_json"),
        (b"\xff\xfe", {"content-type": "application/json"}, 400, "malformed_json"),
        (b"[]", {"content-type": "application/json"}, 400, "invalid_request"),
        (b'{"records": {}}', {"content-type": "application/json"}, 400, "invalid_request"),
        (b'{"records": [], "x": 1}', {"content-type": "application/json"}, 400, "invalid_request"),
        (b'{"records": []}', {"content-type": "application/json"}, 422, "invalid_request"),
        (b'{"records": [1]}', {"content-type": "application/json"}, 422, "invalid_request"),
        (b'{"records": []}', {"content-type": "text/plain"}, 415, "unsupported_media_type"),
        (b'{"records": []}', {}, 415, "unsupported_media_type"),
        (
            b"{}",
            {"content-type": "application/json", "x-request-id": "bad id!"},
            400,
            "invalid_request",
        ),
    ],
)
def test_malformed_requests_get_the_error_shape(
    shared: ServerProcess, content: bytes, headers: dict[str, str], status: int, kind: str
) -> None:
    response = httpx.post(f"{shared.url}/v1/predict", content=content, headers=headers)
    check_error_shape(response, status, kind)


@pytest.mark.hostile
def test_oversized_bodies_and_batches_get_413(shared: ServerProcess, flights: pd.DataFrame) -> None:
    huge = b'{"records": [' + b"1," * (3 * 2**20) + b"1]}"
    check_error_shape(
        httpx.post(
            f"{shared.url}/v1/predict", content=huge, headers={"content-type": "application/json"}
        ),
        413,
        "too_large",
    )
    many = records(flights, 1) * 1001
    check_error_shape(post(shared, "/v1/predict", {"records": many}), 413, "too_large")


def test_unknown_paths_and_methods_get_the_error_shape(shared: ServerProcess) -> None:
    check_error_shape(httpx.get(f"{shared.url}/v2/nothing"), 404, "not_found")
    check_error_shape(httpx.get(f"{shared.url}/v1/predict"), 405, "method_not_allowed")


def test_the_dashboard_is_served_at_ui(shared: ServerProcess) -> None:
    page = httpx.get(f"{shared.url}/ui/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<h1>Overview</h1>" in page.text
    assert "flights@1" in page.text
    bundle = httpx.get(f"{shared.url}/ui/static/plotly.min.js")
    assert bundle.status_code == 200
    assert len(bundle.content) > 1_000_000  # Plotly itself, from the installed package
    # The dashboard's own pages answer in HTML; the API keeps its JSON error shape.
    assert httpx.get(f"{shared.url}/ui/models/9").status_code == 404
    check_error_shape(httpx.get(f"{shared.url}/v2/ui"), 404, "not_found")


def test_openapi_document_describes_each_feature(shared: ServerProcess) -> None:
    doc = httpx.get(f"{shared.url}/openapi.json").json()
    record = doc["components"]["schemas"]["Record"]
    temp = Project.open(shared.root).spec.features["temp"]
    assert (record["properties"]["temp"]["minimum"], record["properties"]["temp"]["maximum"]) == (
        temp.min,
        temp.max,
    )
    assert "null" in record["properties"]["temp"]["type"]
    assert "UA" in record["properties"]["carrier"]["examples"]  # others are accepted
    assert "distance" in record["required"]
    assert doc["paths"]["/v1/predict"]["post"]["requestBody"]["required"] is True


def test_models_health_and_metrics(server: ServerProcess, flights: pd.DataFrame) -> None:
    post(server, "/v1/predict", {"records": records(flights, 4)})
    post(server, "/v1/predict", {"records": "nope"})
    models = httpx.get(f"{server.url}/v1/models").json()
    assert models["serving"]["champion"]["version"] == 1
    assert [v["version"] for v in models["versions"]] == [1, 2]
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    text = httpx.get(f"{server.url}/metrics").text
    assert 'setpoint_requests_total{endpoint="predict",status="200"} 1' in text
    assert 'setpoint_requests_total{endpoint="predict",status="400"} 1' in text
    predicted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("setpoint_predictions_total{")
    )
    assert predicted == 4
    assert 'setpoint_model_version{role="champion"} 1' in text
    assert 'setpoint_request_duration_seconds_count{endpoint="predict"} 2' in text


def test_no_champion_means_not_ready(tmp_path: Path, flights_project: Path) -> None:
    from setpoint.config.loader import SPEC_FILE

    root = tmp_path / "empty"
    root.mkdir()
    (root / SPEC_FILE).write_bytes((flights_project / SPEC_FILE).read_bytes())
    with serving(root, ready=False) as server:
        check_error_shape(httpx.get(f"{server.url}/readyz"), 503, "not_ready")
        check_error_shape(post(server, "/v1/predict", {"records": [{}]}), 503, "not_ready")


@pytest.mark.hostile
def test_feedback_is_idempotent_and_judged_item_by_item(
    server: ServerProcess, flights: pd.DataFrame, project_dir: Path
) -> None:
    answer = post(server, "/v1/predict", {"records": records(flights, 2)}).json()
    rid = answer["request_id"]
    items = [
        {"request_id": rid, "index": 0, "label": 1},
        {"request_id": rid, "index": 1, "label": 0},
    ]
    first = post(server, "/v1/feedback", {"feedback": items})
    assert first.status_code == 200
    assert first.json() == {"stored": 2, "duplicates": 0, "conflicts": [], "rejected": []}
    again = post(server, "/v1/feedback", {"feedback": items})
    assert again.json() == {"stored": 0, "duplicates": 2, "conflicts": [], "rejected": []}
    # a conflict is that item's alone: the new entity of the same request is stored
    clash = [{"entity_id": "new-entity", "label": 1}, {"request_id": rid, "index": 0, "label": 0}]
    mixed = post(server, "/v1/feedback", {"feedback": clash})
    assert mixed.status_code == 200, mixed.text
    assert mixed.json() == {
        "stored": 1,
        "duplicates": 0,
        "conflicts": [{"record": 1, "key": f"req:{rid}:0", "stored": 1, "sent": 0}],
        "rejected": [],
    }
    check_error_shape(post(server, "/v1/feedback", {"feedback": clash[1:]}), 409, "conflict")
    bad = check_error_shape(
        post(server, "/v1/feedback", {"feedback": [{"index": "x"}]}), 422, "invalid_request"
    )
    assert bad["errors"]
    # labels are judged against the champion's target: one it does not know is refused
    victim = post(
        server, "/v1/feedback", {"feedback": [{"entity_id": "victim-1", "label": "banana"}]}
    )
    error = check_error_shape(victim, 422, "invalid_request")
    assert error["errors"] == [
        {
            "record": 0,
            "field": "label",
            "kind": "unknown_class",
            "detail": "'banana' is not a class of 'late': expected one of [0, 1]",
        }
    ]
    # one fake label among a thousand real ones costs that item only
    batch: list[dict[str, object]] = [
        {"entity_id": f"flight-{i}", "label": i % 2} for i in range(1000)
    ]
    batch[321]["label"] = "banana"
    batch[654]["label"] = 1.0  # one JSON number: the class 1
    answer = post(server, "/v1/feedback", {"feedback": batch})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["stored"], body["duplicates"], body["conflicts"]) == (999, 0, [])
    assert [(r["record"], [e["kind"] for e in r["errors"]]) for r in body["rejected"]] == [
        (321, ["unknown_class"])
    ]
    stored = list_feedback(Project.open(project_dir).store.db, project="flights")
    assert len(stored) == 3 + 999
    assert "banana" not in {f.label for f in stored}


@pytest.mark.hostile
def test_admin_needs_a_valid_key_and_promotes_and_rolls_back(
    server: ServerProcess, project_dir: Path, flights: pd.DataFrame
) -> None:
    check_error_shape(post(server, "/v1/admin/promote", {"version": 2}), 401, "unauthorized")
    wrong = {"Authorization": "Bearer sp_" + "x" * 43}
    check_error_shape(
        post(server, "/v1/admin/promote", {"version": 2}, headers=wrong), 403, "forbidden"
    )
    key = create_key(Project.open(project_dir).store.db, name="ops")
    auth = {"Authorization": f"Bearer {key}"}
    check_error_shape(
        post(server, "/v1/admin/promote", {"version": "2"}, headers=auth), 400, "invalid_request"
    )
    check_error_shape(
        post(server, "/v1/admin/promote", {"version": 9}, headers=auth), 404, "not_found"
    )
    promoted = post(
        server, "/v1/admin/promote", {"version": 2, "force": True, "reason": "test"}, headers=auth
    )
    assert promoted.status_code == 200, promoted.text
    answer = promoted.json()
    assert answer["serving"]["champion"] == 2
    # The smaller second model fails the gate; forced past it, it was promoted all the same.
    assert answer["decision"]["passed"] is False
    assert (answer["promoted"], answer["forced"]) == (True, True)
    assert (
        post(server, "/v1/predict", {"records": records(flights, 1)}).json()["model_version"] == 2
    )
    back = post(server, "/v1/admin/rollback", {"reason": "test"}, headers=auth)
    assert back.json()["champion"] == 1
    check_error_shape(post(server, "/v1/admin/rollback", {}, headers=auth), 409, "conflict")
    assert key not in server.log()


@pytest.mark.hostile
def test_a_feedback_key_may_post_outcomes_and_nothing_else(
    project_dir: Path, flights: pd.DataFrame
) -> None:
    set_serving(project_dir, predict_auth="key", feedback_auth="key")
    db = Project.open(project_dir).store.db
    admin = {"Authorization": f"Bearer {create_key(db, name='app')}"}
    labels = {"Authorization": f"Bearer {create_key(db, name='labels', scope='feedback')}"}
    item = {"feedback": [{"entity_id": "e1", "label": 1}]}
    with serving(project_dir) as server:
        check_error_shape(
            post(server, "/v1/predict", {"records": records(flights, 1)}), 401, "unauthorized"
        )
        ok = post(server, "/v1/predict", {"records": records(flights, 1)}, headers=admin)
        assert ok.status_code == 200
        check_error_shape(post(server, "/v1/feedback", item), 401, "unauthorized")
        stored = post(server, "/v1/feedback", item, headers=labels)
        assert stored.status_code == 200, stored.text
        assert stored.json()["stored"] == 1
        # an admin key may post feedback; a feedback key may do nothing else
        assert post(server, "/v1/feedback", item, headers=admin).json()["duplicates"] == 1
        refused = post(server, "/v1/predict", {"records": records(flights, 1)}, headers=labels)
        check_error_shape(refused, 403, "forbidden")
        for path in ("/v1/admin/promote", "/v1/admin/rollback", "/v1/admin/reload"):
            body = {"version": 2, "force": True} if path.endswith("promote") else {}
            error = check_error_shape(post(server, path, body, headers=labels), 403, "forbidden")
            assert "'labels' is a feedback key" in str(error["message"])
        assert httpx.get(f"{server.url}/v1/models").json()["serving"]["champion"]["version"] == 1


def test_an_unseen_category_is_scored_and_flagged(
    shared: ServerProcess, flights: pd.DataFrame
) -> None:
    record = records(flights, 1)[0]
    record["dest"] = "ABQ"  # a route that opened after the training data
    response = post(shared, "/v1/predict", {"records": [record]})
    assert response.status_code == 200, response.text
    [prediction] = response.json()["predictions"]
    assert [(f["field"], f["kind"]) for f in prediction["flags"]] == [("dest", "unseen_category")]


def test_impute_mode_answers_and_flags(project_dir: Path, flights: pd.DataFrame) -> None:
    set_serving(project_dir, on_invalid="impute")
    with serving(project_dir) as server:
        record = records(flights, 1)[0]
        record["temp"] = "warm"
        record["carrier"] = "ZZ"
        response = post(server, "/v1/predict", {"records": [record]})
        assert response.status_code == 200, response.text
        flags = {(f["field"], f["kind"]) for f in response.json()["predictions"][0]["flags"]}
        assert flags == {("temp", "type_mismatch"), ("carrier", "unseen_category")}
