"""Alerts on real monitored windows, stored once and POSTed to a real local webhook.

The project and its log are the session's ``logged_project`` (tests/conftest.py):
three weeks of real held-out flights scored by the real model, the third with
temperatures +30 degrees, weeks 1 and 2 partly labelled. Each test works on its
own copy of the project folder (store and log), so the alerts one test stores do
not silence another's.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from _support.cli import run as setpoint
from _support.logged import MONDAY
from _support.serving import free_port
from setpoint.config.loader import SPEC_FILE, dump_spec, load_spec
from setpoint.config.spec import MonitoringSpec
from setpoint.monitor.alerts import check_alerts, raise_alerts, redact
from setpoint.monitor.results import MonitorResult
from setpoint.monitor.runner import monitor_project
from setpoint.project import Project
from setpoint.registry.events import list_events


@pytest.fixture(scope="module")
def base(logged_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's copy of the session's logged project; tests copy it, never change it."""
    return shutil.copytree(logged_project, tmp_path_factory.mktemp("alerts") / "flights")


@pytest.fixture(scope="module")
def weekly(base: Path) -> MonitorResult:
    project = Project.open(base)
    try:
        return monitor_project(project, window="1w", clock="served")
    finally:
        project.store.db.dispose()


@pytest.fixture(scope="module")
def limit(weekly: MonitorResult) -> float:
    """A drift share between the clean weeks' and the shifted week's.

    ``dest`` drifts in every week of this sample (a held-out slice is not the
    whole reference), and ``temp``, shifted in week 3, weighs little in the
    model: the shifted week's share is higher, not above the default 0.5.
    """
    shares = [w.drift.drift_share for w in weekly.windows]
    assert shares[2] > max(shares[:2]) + 0.01, shares
    return (shares[2] + max(shares[:2])) / 2


def copy_with(base: Path, target: Path, **monitoring: Any) -> Project:
    """A copy of the project whose spec has ``monitoring``."""
    shutil.copytree(base, target)
    spec = load_spec(target / SPEC_FILE)
    spec = spec.model_copy(update={"monitoring": MonitoringSpec(**monitoring)})
    (target / SPEC_FILE).write_text(dump_spec(spec), encoding="utf-8")
    return Project.open(target)


class Hook:
    """A real HTTP server on loopback that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep the test output clean

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/secret-token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_drift_fires_on_the_shifted_week_only(weekly: MonitorResult, limit: float) -> None:
    rules = MonitoringSpec(max_drift_share=limit)
    found = check_alerts(weekly, monitoring=rules, higher_is_better=True)
    assert [(a.rule, a.payload["window_start"]) for a in found] == [
        ("drift", (MONDAY + timedelta(days=14)).isoformat())
    ]
    assert "temp" in found[0].payload["drifted_features"]
    assert found[0].payload["drift_share"] >= limit
    assert len(check_alerts(weekly, monitoring=rules, higher_is_better=True, latest=1)) == 1
    assert not check_alerts(weekly, monitoring=rules, higher_is_better=True, latest=0)
    # every week drifts a little: a low enough limit fires on all three
    low = rules.model_copy(update={"max_drift_share": 0.1})
    assert len(check_alerts(weekly, monitoring=low, higher_is_better=True)) == 3
    drift_off = rules.model_copy(update={"alerts": ["realized"]})
    assert not check_alerts(weekly, monitoring=drift_off, higher_is_better=True)


def test_realized_fires_only_when_the_whole_interval_is_below(weekly: MonitorResult) -> None:
    first = weekly.windows[0].realized
    assert first is not None
    value = first.metrics["pr_auc"]
    assert value.value is not None
    assert value.high is not None
    assert value.low is not None
    rules = MonitoringSpec(alerts=["realized"], setpoint=(value.value + value.high) / 2)

    def windows(spec: MonitoringSpec) -> list[str]:
        found = check_alerts(weekly, monitoring=spec, higher_is_better=True)
        return [a.payload["window_start"] for a in found]

    # below the point value, not below the interval: noise, no alert
    assert MONDAY.isoformat() not in windows(rules)
    assert MONDAY.isoformat() in windows(rules.model_copy(update={"setpoint": value.high + 0.01}))
    # the third week has no labels: nothing realized to judge
    assert len(windows(rules.model_copy(update={"setpoint": 1.0}))) == 2
    # a metric where lower is better fires on the other side
    lower = check_alerts(
        weekly,
        monitoring=rules.model_copy(update={"setpoint": value.low - 0.01}),
        higher_is_better=False,
    )
    assert MONDAY.isoformat() in [a.payload["window_start"] for a in lower]


def test_estimated_compares_the_cbpe_value(weekly: MonitorResult) -> None:
    estimates = []
    for w in weekly.windows:
        assert w.estimate is not None
        estimates.append(w.estimate.metrics["pr_auc"].value)
    assert all(e is not None for e in estimates)
    spec = MonitoringSpec(alerts=["estimated"], setpoint=min(e or 0 for e in estimates) - 0.01)
    assert not check_alerts(weekly, monitoring=spec, higher_is_better=True)
    spec = spec.model_copy(update={"setpoint": max(e or 0 for e in estimates) + 0.01})
    found = check_alerts(weekly, monitoring=spec, higher_is_better=True)
    assert [a.rule for a in found] == ["estimated"] * 3
    assert found[0].payload["value"] == pytest.approx(estimates[0])


def test_alerts_are_stored_once_and_delivered(
    base: Path, weekly: MonitorResult, limit: float, tmp_path: Path, hook: Hook
) -> None:
    project = copy_with(
        base, tmp_path / "flights", webhook=hook.url, setpoint=1.0, max_drift_share=limit
    )
    first = raise_alerts(project, weekly)
    rules = ["drift", "estimated", "estimated", "estimated", "realized", "realized"]
    assert sorted(a.rule for a in first.fired) == rules
    assert first.failed == ()
    stored = list_events(project.store.db, project="flights", kind="alert")
    assert len(stored) == 6
    assert sorted(e.payload["rule"] for e in stored) == sorted(a.rule for a in first.fired)
    assert sorted(json.dumps(p, sort_keys=True) for p in hook.received) == sorted(
        json.dumps(e.payload, sort_keys=True) for e in stored
    )
    drift = next(p for p in hook.received if p["rule"] == "drift")
    assert drift["window_end"] == (MONDAY + timedelta(days=21)).isoformat()
    assert drift["project"] == "flights"

    again = raise_alerts(project, weekly)
    assert again.fired == ()
    assert len(again.repeated) == 6
    assert len(list_events(project.store.db, project="flights", kind="alert")) == 6
    assert len(hook.received) == 6


def test_a_refused_webhook_is_an_event_not_a_failure(
    base: Path, weekly: MonitorResult, limit: float, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{free_port()}/hooks/secret-token"
    project = copy_with(base, tmp_path / "flights", webhook=url, max_drift_share=limit)
    outcome = raise_alerts(project, weekly, timeout=2.0)
    assert [a.rule for a in outcome.fired] == ["drift"]
    assert len(outcome.failed) == 1
    failed = list_events(project.store.db, project="flights", kind="alert_delivery_failed")
    assert len(failed) == 1
    assert failed[0].payload["alert"]["rule"] == "drift"
    assert "secret-token" not in json.dumps(failed[0].payload)
    assert failed[0].payload["webhook"] == redact(url)
    assert "Connect" in failed[0].payload["error"] or "refused" in failed[0].payload["error"]


def test_cli_prints_alerts_and_survives_a_dead_webhook(
    base: Path, limit: float, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    project = copy_with(base, tmp_path / "flights", webhook=url, max_drift_share=limit)
    project.store.db.dispose()
    args = ("monitor", "--window", "1w", "--clock", "served")
    result = setpoint(*args, cwd=project.root)
    assert result.returncode == 0, result.stderr
    assert "alert (drift)" in result.stdout
    assert "alert not delivered" in result.stderr
    again = setpoint(*args, "--format", "json", cwd=project.root)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["alerts"] == []
    assert "already raised" in again.stderr
    quiet = setpoint(*args, "--no-alerts", cwd=project.root)
    assert quiet.returncode == 0, quiet.stderr
    assert "alert" not in quiet.stdout + quiet.stderr
    reopened = Project.open(project.root)
    assert len(list_events(reopened.store.db, project="flights", kind="alert")) == 1
    assert len(list_events(reopened.store.db, project="flights", kind="alert_delivery_failed")) == 1


def test_cli_names_a_bad_webhook_key(base: Path, tmp_path: Path) -> None:
    root = shutil.copytree(base, tmp_path / "flights")
    spec = (root / SPEC_FILE).read_text(encoding="utf-8")
    (root / SPEC_FILE).write_text(
        spec + "monitoring:\n  webhook: hooks.example.com/x\n", encoding="utf-8"
    )
    result = setpoint("monitor", "--window", "1w", "--clock", "served", cwd=root)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "monitoring.webhook" in result.stderr
    assert "http or https URL" in result.stderr
    assert "Traceback" not in result.stderr
