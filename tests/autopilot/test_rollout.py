"""The rollout's one state machine (``autopilot/rollout.py::decide``) and its two drivers.

The replay (``quickstart/strategies.py``) is only a measure of production if it
takes the same decisions as the live loop (``autopilot/loop.py``): both must ask
``decide``, and neither may keep a rule of its own about when a stage ends.
"""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from setpoint.autopilot.compare import Comparison
from setpoint.autopilot.rollout import Action, Evidence, Rollout, decide
from setpoint.config.policy import AutopilotPolicy

SRC = Path(__file__).resolve().parents[2] / "src" / "setpoint"
DRIVERS = [SRC / "autopilot" / "loop.py", SRC / "quickstart" / "strategies.py"]

POLICY = AutopilotPolicy.model_validate(
    {
        "triggers": {"schedule": "30d"},
        "shadow": {"requests": 100, "duration": "1d", "max_drop": 0.01},
        "watch": {"duration": "3d", "max_drop": 0.01},
    }
)
START = datetime(2013, 5, 1, tzinfo=UTC)
WORSE = Comparison(delta=-0.05, low=-0.08, high=-0.02, n=5000)
UNSURE = Comparison(delta=-0.05, low=-0.10, high=0.01, n=300)
BETTER = Comparison(delta=0.03, low=0.01, high=0.05, n=5000)


@pytest.mark.parametrize("path", DRIVERS, ids=lambda p: p.name)
def test_each_driver_asks_decide_and_keeps_no_stage_rule_of_its_own(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "setpoint.autopilot.rollout"
        for alias in node.names
    }
    assert "decide" in imported
    calls = [
        node.func.id if isinstance(node.func, ast.Name) else node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute)
    ]
    assert calls.count("decide") == 1
    assert "regressed" not in calls  # whether a comparison regressed is decide's question
    # The thresholds that end a stage; a driver reads only how many requests it gathered.
    thresholds = [
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr in ("duration", "max_drop", "requests")
        and not (isinstance(node.value, ast.Name) and node.value.id == "evidence")
    ]
    assert thresholds == [], f"{path.name} reads {thresholds}"


@pytest.mark.parametrize(
    ("stage", "after", "evidence", "action"),
    [
        ("shadow", timedelta(hours=23), Evidence(requests=500), "wait"),
        ("shadow", timedelta(days=2), Evidence(requests=99), "wait"),
        ("shadow", timedelta(days=1), Evidence(requests=100), "promote"),
        ("shadow", timedelta(days=1), Evidence(requests=100, compared=UNSURE), "promote"),
        ("shadow", timedelta(days=1), Evidence(requests=100, compared=BETTER), "promote"),
        ("shadow", timedelta(days=1), Evidence(requests=100, compared=WORSE), "reject"),
        # Too early to reject as well: a shadow's verdict waits for its period.
        ("shadow", timedelta(hours=1), Evidence(requests=100, compared=WORSE), "wait"),
        ("watch", timedelta(hours=1), Evidence(requests=0), "wait"),
        ("watch", timedelta(hours=1), Evidence(requests=10, compared=UNSURE), "wait"),
        # A regression under watch rolls back at once, before the watch is over.
        ("watch", timedelta(hours=1), Evidence(requests=10, compared=WORSE), "rollback"),
        ("watch", timedelta(days=3), Evidence(requests=10, compared=BETTER), "keep"),
        ("watch", timedelta(days=3), Evidence(requests=0), "keep"),
        ("watch", timedelta(days=5), Evidence(requests=10, compared=WORSE), "rollback"),
    ],
)
def test_decide(stage: str, after: timedelta, evidence: Evidence, action: Action) -> None:
    rollout = Rollout.shadow(challenger=2, champion=1, now=START)
    if stage == "watch":
        rollout = rollout.promoted(now=START)
    assert decide(rollout, now=START + after, evidence=evidence, policy=POLICY) == action
