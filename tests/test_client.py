"""``setpoint.Client`` against a real HTTP server on loopback.

The server is ``_support.fake_server``: it speaks the contract of
docs/serving.md and records every request, so these tests check what the
client sends and how it reads answers, retries and errors. End-to-end tests
against ``setpoint serve`` itself live with the server.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from _support.fake_server import FakeServer, dead_url, running
from setpoint import Client, PredictResponse
from setpoint.errors import InvalidParameterError, MissingExtraError, ServerError, SetpointError

KEY = "sp_test-admin-key"


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with running(FakeServer(api_key=KEY)) as fake:
        yield fake


@pytest.fixture
def client(server: FakeServer) -> Iterator[Client]:
    with Client(server.url, api_key=KEY, backoff=0.0) as c:
        yield c


def test_predict_sends_the_documented_request(server: FakeServer, client: Client) -> None:
    records = [
        {"carrier": "UA", "distance": np.float64(1400.0), "temp": float("nan")},
        {"carrier": "AA", "distance": 200, "scheduled_at": datetime(2013, 8, 1, 9, tzinfo=UTC)},
    ]
    answer = client.predict(records, explain=True, client_request_id="replay-0001")

    (sent,) = server.calls("/v1/predict")
    assert sent.method == "POST"
    assert sent.query == {"explain": "true"}
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["x-request-id"] == "replay-0001"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.body == {
        "records": [
            {"carrier": "UA", "distance": 1400.0, "temp": None},
            {"carrier": "AA", "distance": 200, "scheduled_at": "2013-08-01T09:00:00+00:00"},
        ]
    }
    assert isinstance(answer, PredictResponse)
    assert answer.client_request_id == "replay-0001"
    assert (answer.request_id, 0) in server.predictions  # the server's id, not the client's
    assert answer.request_id != "replay-0001"
    assert answer.model_version == 1
    assert len(answer.predictions) == 2
    assert {"label", "score", "contributions"} <= set(answer.predictions[0])


def test_one_record_is_a_batch_of_one_with_a_fresh_request_id(
    server: FakeServer, client: Client
) -> None:
    answer = client.predict({"distance": 10.0})
    (sent,) = server.calls("/v1/predict")
    assert sent.body == {"records": [{"distance": 10.0}]}
    assert sent.query == {}
    assert len(sent.headers["x-request-id"]) == 32
    assert answer.client_request_id == sent.headers["x-request-id"]
    assert (answer.request_id, 0) in server.predictions  # the server's id, not the client's


def test_503_is_retried_with_the_same_request_id(server: FakeServer, client: Client) -> None:
    server.unavailable = 2
    answer = client.predict({"distance": 10.0})
    attempts = server.calls("/v1/predict")
    assert len(attempts) == 3
    assert {a.headers["x-request-id"] for a in attempts} == {answer.client_request_id}
    assert len(server.predictions) == 1


def test_503_past_the_retries_raises_not_ready(server: FakeServer) -> None:
    server.unavailable = 10
    with Client(server.url, retries=2, backoff=0.0) as client, pytest.raises(ServerError) as info:
        client.feedback([{"entity_id": "e1", "label": True}])
    assert (info.value.status, info.value.kind) == (503, "not_ready")
    assert len(server.calls("/v1/feedback")) == 3


def test_error_shape_becomes_a_server_error(server: FakeServer, client: Client) -> None:
    with pytest.raises(ServerError) as info:
        client.predict([{"distance": 1.0}, {"distance": "far"}], client_request_id="bad-1")
    error = info.value
    assert isinstance(error, SetpointError)
    assert (error.status, error.kind) == (422, "invalid_request")
    assert error.errors == [
        {"record": 1, "field": "distance", "kind": "wrong_type", "detail": "not a number"}
    ]
    assert error.request_id
    assert "422 invalid_request" in str(error)
    assert "record 1, field 'distance': wrong_type" in str(error)
    assert len(server.calls("/v1/predict")) == 1  # a 4xx is never retried


@pytest.mark.parametrize(
    ("key", "status", "kind"), [(None, 401, "unauthorized"), ("wrong", 403, "forbidden")]
)
def test_admin_without_a_valid_key_is_refused(
    server: FakeServer, key: str | None, status: int, kind: str
) -> None:
    with Client(server.url, api_key=key) as client, pytest.raises(ServerError) as info:
        client.reload()
    assert (info.value.status, info.value.kind) == (status, kind)


def test_admin_calls_send_their_bodies(server: FakeServer, client: Client) -> None:
    assert client.models()["champion"] == 1
    assert client.promote(2, reason="better on August")["champion"] == 2
    assert client.rollback(reason="too slow")["champion"] == 1
    assert client.reload() == {"champion": 1}
    bodies = {r.path: r.body for r in server.received}
    assert bodies["/v1/admin/promote"] == {
        "version": 2,
        "reason": "better on August",
        "force": False,
    }
    assert bodies["/v1/admin/rollback"] == {"reason": "too slow"}
    assert bodies["/v1/admin/reload"] == {}
    with pytest.raises(ServerError) as info:
        client.promote(9, reason="no such version")
    assert (info.value.status, info.value.kind) == (404, "not_found")


def test_feedback_is_idempotent_and_conflicts_are_errors(client: Client) -> None:
    answer = client.predict([{"distance": 1.0}, {"distance": 2.0}])
    items = [{"request_id": answer.request_id, "index": i, "label": i == 1} for i in range(2)]
    assert client.feedback(items) == {"stored": 2, "duplicates": 0}
    assert client.feedback(items) == {"stored": 0, "duplicates": 2}
    with pytest.raises(ServerError) as info:
        client.feedback({"request_id": answer.request_id, "index": 0, "label": True})
    assert (info.value.status, info.value.kind) == (409, "conflict")


def test_health_and_readiness(server: FakeServer, client: Client) -> None:
    assert client.health()
    assert client.ready()
    server.ready = False
    assert client.health()
    assert not client.ready()


def test_an_unreachable_server_names_the_url() -> None:
    url = dead_url()
    with Client(url, retries=1, backoff=0.0) as client:
        assert not client.health()
        assert not client.ready()
        with pytest.raises(ServerError) as info:
            client.models()
    assert info.value.status is None
    assert info.value.kind == "unreachable"
    assert url in str(info.value)
    assert "setpoint serve" in str(info.value)
    assert "after 2 attempts" in str(info.value)


@pytest.mark.parametrize(
    ("call", "parameter"),
    [
        (lambda c: c.predict([]), "records"),
        (lambda c: c.predict(["not a dict"]), "records"),
        (lambda c: c.predict({"a": 1}, client_request_id="has space"), "client_request_id"),
        (lambda c: c.feedback("label"), "items"),
        (lambda c: c.promote(0, reason="x"), "version"),
    ],
)
def test_bad_arguments_are_refused_before_sending(
    server: FakeServer, client: Client, call: Callable[[Client], Any], parameter: str
) -> None:
    with pytest.raises(InvalidParameterError) as info:
        call(client)
    assert info.value.parameter == parameter
    assert server.received == []


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"base_url": "127.0.0.1:8000"}, "base_url"),
        ({"timeout": 0}, "timeout"),
        ({"retries": -1}, "retries"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any], parameter: str) -> None:
    with pytest.raises(InvalidParameterError, match=parameter):
        Client(**kwargs)


def test_without_httpx_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)  # what an absent package looks like
    with pytest.raises(MissingExtraError) as info:
        Client()
    assert info.value.extra == "serve"
    assert "setpoint[serve]" in str(info.value)


def test_import_setpoint_stays_light() -> None:
    code = (
        "import sys, setpoint\n"
        "heavy = {'setpoint.client', 'httpx', 'numpy'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "assert setpoint.Client.__module__ == 'setpoint.client'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def test_close_ends_the_connection_pool(server: FakeServer) -> None:
    with Client(server.url) as client:
        assert client.health()
        assert not client.closed
    assert client.closed
