"""``setpoint simulate`` on a month of real flights, run as a user runs it.

A short span keeps it quick; the full year's figures are in docs/autopilot.md.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from _support.cli import run
from setpoint.config.loader import dump_spec
from setpoint.config.policy import AutopilotPolicy
from setpoint.quickstart.build import quickstart_spec


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object], str]:
    root = tmp_path_factory.mktemp("simulate")
    spec = quickstart_spec()
    spec = spec.model_copy(
        update={
            # A small model: this checks the replay's orchestration, not how good it gets.
            "model": spec.model.model_copy(
                update={"params": {"n_estimators": 60, "num_leaves": 15}}
            ),
            "autopilot": AutopilotPolicy.model_validate(
                {
                    "triggers": {"schedule": "10d"},
                    "cooldown": "1d",
                    "data": {"mode": "all", "holdout": "5d", "min_rows": 1000},
                    "shadow": {"requests": 100, "duration": "1d"},
                    "watch": {"duration": "3d"},
                }
            ),
        }
    )
    (root / "spec.yaml").write_text(dump_spec(spec), encoding="utf-8")
    done = run(
        "simulate",
        "--from",
        "2013-02-01",
        "--to",
        "2013-03-01",
        "--spec",
        "spec.yaml",
        "--out",
        "out",
        cwd=root,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads((root / "out" / "simulation.json").read_text(encoding="utf-8"))
    return root / "out", document, done.stdout


def test_every_strategy_is_scored_every_week(simulated: tuple[Path, dict, str]) -> None:
    _, document, stdout = simulated
    weeks = document["weeks"]
    assert [w["week"] for w in weeks] == ["2013-02-01", "2013-02-08", "2013-02-15", "2013-02-22"]
    for week in weeks:
        assert week["flights"] > 5000
        for name in ("static", "weekly", "autopilot"):
            assert 0 < week[name] < 1
    # The first week is served by the one starting model under every strategy.
    assert weeks[0]["static"] == weeks[0]["weekly"] == weeks[0]["autopilot"]
    assert "Target (>= 90% with <= 1/3)" in stdout


def test_retrains_follow_each_strategy(simulated: tuple[Path, dict, str]) -> None:
    _, document, _ = simulated
    retrains = document["retrains"]
    # Weekly retrains after days 7, 14, 21 and 28; static never.
    assert retrains["static"] == 0
    assert retrains["weekly"] == 4
    # Every 10 days: after days 10 and 20 (the trigger is judged at each day's end).
    assert retrains["autopilot"] == 2
    kinds = [e["kind"] for e in document["events"]]
    assert kinds.count("trigger") == kinds.count("gate") == 2
    triggers = [e for e in document["events"] if e["kind"] == "trigger"]
    assert [t["at"][:10] for t in triggers] == ["2013-02-11", "2013-02-21"]
    # Nothing is promoted without a gate that passed and a shadow period after it.
    gates = [e for e in document["events"] if e["kind"] == "gate"]
    promotions = [e for e in document["events"] if e["kind"] == "promote"]
    assert len(promotions) <= sum(g["passed"] for g in gates)
    for promotion in promotions:
        assert any(g["at"] < promotion["at"] and g["passed"] for g in gates)


def test_outputs_are_written(simulated: tuple[Path, dict, str]) -> None:
    out, document, _ = simulated
    root = ET.fromstring((out / "simulation.svg").read_text(encoding="utf-8"))
    assert root.tag.endswith("svg")
    lines = (out / "simulation.md").read_text(encoding="utf-8").splitlines()
    assert sum(1 for line in lines if line.startswith("| 2013-")) == len(document["weeks"])
    assert document["summary"]["mean"]["static"] == pytest.approx(
        sum(w["static"] for w in document["weeks"]) / len(document["weeks"])
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--from", "yesterday"), "--from/--to"),
        (("--from", "2013-05-01", "--to", "2013-05-03"), "at least 14 days"),
        (("--label-delay", "soon"), "not a duration"),
        (("--spec", "missing.yaml"), "missing.yaml"),
    ],
)
def test_bad_flags_are_clear_errors(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    done = run("simulate", "--out", "out", *args, cwd=tmp_path)
    assert done.returncode == 2, done.stdout
    assert message in done.stderr
    assert "Traceback" not in done.stderr
