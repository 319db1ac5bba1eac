"""The live loop on a real project: real flights, a real prediction log, real feedback rows.

The log is written with the server's own ``LocalPredictionLog`` (explicit times, as
a replayed clock would give), the feedback with ``record_feedback``; the loop
is driven with explicit ``now`` values so that shadow and watch periods pass
without waiting.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from _support.serving import REPO, build_project, copy_project, records
from setpoint.autopilot.loop import RETRAIN, Autopilot
from setpoint.config.loader import SPEC_FILE, dump_spec, load_spec
from setpoint.config.policy import AutopilotPolicy
from setpoint.errors import ConfigError
from setpoint.project import Project
from setpoint.registry import jobs
from setpoint.registry.feedback import record_feedback
from setpoint.store.tables import feedback
from setpoint.traffic.db_log import DatabasePredictionLog
from setpoint.traffic.local_log import LocalPredictionLog

# Feedback is stamped with the wall clock when it is received, and a look at T0
# counts only labels received by then: T0 lies ahead of the test's own clock.
T0 = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
POLICY: dict[str, Any] = {
    # A level no model reaches: the trigger trips on the first look.
    "triggers": {"realized": {"level": 0.99, "min_labels": 100}},
    "cooldown": "1h",
    "data": {"mode": "all", "holdout": "2d", "min_rows": 1000},
    "shadow": {"requests": 100, "duration": "1h", "min_labels": 100},
    "watch": {"duration": "1d", "min_labels": 100, "max_drop": 0.0},
    "check_every": "10min",
}


def _configure(root: Path, *, margin: float, policy: dict[str, Any] | None = None) -> Project:
    spec = load_spec(root / SPEC_FILE)
    spec = spec.model_copy(
        update={
            "autopilot": AutopilotPolicy.model_validate(policy or POLICY),
            "gate": spec.gate.model_copy(update={"margin": margin, "max_segment_drop": 1.0}),
        }
    )
    (root / SPEC_FILE).write_text(dump_spec(spec), encoding="utf-8")
    return Project.open(root)


def _log(
    project: Project,
    flights: pd.DataFrame,
    *,
    start: datetime,
    prefix: str,
    served: int,
    shadow: int | None = None,
    spoil: int | None = None,
) -> None:
    """Log ``flights`` served by version ``served`` (and scored by ``shadow``), with labels.

    ``spoil`` names a version whose logged scores are turned upside down, so
    that it ranks late flights last: a regression made on purpose.
    """
    recs = records(flights, len(flights))
    frame = pd.DataFrame(recs)
    step = timedelta(hours=6) / len(recs)
    rows: list[dict[str, Any]] = []
    for version, role in ((served, "champion"), (shadow, "shadow")):
        if version is None:
            continue
        scores = np.asarray(project.load_model(version).predict_scores(frame))
        if version == spoil:
            scores = 1.0 - scores
        rows += [
            {
                "request_id": f"{prefix}{i}",
                "index": 0,
                "entity_id": rec["flight_id"],
                "time": start + i * step,
                "model_version": str(version),
                "role": role,
                "inputs": rec,
                "output": {"label": bool(score >= 0.5), "score": float(score)},
                "latency_ms": 1.0,
            }
            for i, (rec, score) in enumerate(zip(recs, scores, strict=True))
        ]
    if project.store.db.url.startswith("postgresql"):
        with DatabasePredictionLog(project.store.db, project=project.name) as pglog:
            pglog.append_many(rows)
    else:
        with LocalPredictionLog(project.store.home / "predictions" / project.name / "w0") as plog:
            plog.append_many(rows)
    labels = flights["late"].astype(int).tolist()
    record_feedback(
        project.store.db,
        project=project.name,
        items=[{"request_id": f"{prefix}{i}", "label": labels[i]} for i in range(len(recs))],
    )


@pytest.fixture(scope="module")
def base(
    flights_project: Path, flight_events: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, pd.DataFrame]:
    root = copy_project(flights_project, tmp_path_factory.mktemp("autopilot") / "flights")
    # Without a policy: each test writes the one it needs.
    spec = load_spec(root / SPEC_FILE).model_copy(update={"autopilot": None})
    (root / SPEC_FILE).write_text(dump_spec(spec), encoding="utf-8")
    return root, flight_events


@pytest.fixture
def project(base: tuple[Path, pd.DataFrame], tmp_path: Path) -> Project:
    import shutil

    root = shutil.copytree(base[0], tmp_path / "flights")
    return _configure(root, margin=-1.0)


def _flights(base: tuple[Path, pd.DataFrame], n: int, *, offset: int = 0) -> pd.DataFrame:
    frame = base[1].sort_values("scheduled_at").reset_index(drop=True)
    return frame.iloc[len(frame) - n - offset : len(frame) - offset]


def test_no_policy_is_a_clear_error(base: tuple[Path, pd.DataFrame]) -> None:
    with pytest.raises(ConfigError, match="no 'autopilot' section"):
        Autopilot(Project.open(base[0]))


def test_quiet_without_traffic(project: Project) -> None:
    assert Autopilot(project).tick(now=T0) == []
    assert jobs.list_jobs(project.store.db, project=project.name) == []


@pytest.fixture
def on_backend(
    base: tuple[Path, pd.DataFrame],
    store_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Project]:
    """A project of its own on each metadata backend (PostgreSQL when configured)."""
    for key, value in store_env.items():
        monkeypatch.setenv(key, value)
    root = tmp_path / "flights"
    build_project(root, base[1])
    project = _configure(root, margin=-1.0)
    try:
        yield project
    finally:
        project.store.db.dispose()  # PostgreSQL connections must not outlive the test


def test_trip_retrain_shadow_promote_then_roll_back(
    on_backend: Project, base: tuple[Path, pd.DataFrame]
) -> None:
    project = on_backend
    pilot = Autopilot(project)
    _log(
        project,
        _flights(base, 400, offset=800),
        start=T0 - timedelta(hours=8),
        prefix="a",
        served=1,
    )
    said = pilot.tick(now=T0)
    job = jobs.list_jobs(project.store.db, project=project.name)[0]
    assert job.kind == RETRAIN
    assert "realized pr_auc" in job.payload["trips"][0]
    challenger = int(job.state["version"])
    assert challenger == 3, said
    assert job.stage == "shadow"
    assert project.aliases() == {"champion": 1, "shadow": 3}
    lineage = project.versions()[-1].lineage["autopilot"]
    assert lineage["job"] == job.id
    assert lineage["as_of"] == T0.isoformat()

    # Too early: the shadow has seen no request yet.
    assert pilot.tick(now=T0 + timedelta(minutes=20)) == []
    _log(project, _flights(base, 300, offset=400), start=T0, prefix="b", served=1, shadow=3)
    said = pilot.tick(now=T0 + timedelta(hours=7))
    assert said == ["flights@3 promoted to champion"]
    assert project.aliases() == {"champion": 3, "shadow": 1}

    # Served by 3, its scores spoiled; 1 scores the same requests in shadow.
    _log(
        project,
        _flights(base, 300),
        start=T0 + timedelta(hours=8),
        prefix="c",
        served=3,
        shadow=1,
        spoil=3,
    )
    said = pilot.tick(now=T0 + timedelta(hours=15))
    assert said == ["flights@3 rolled back to @1"]
    assert project.aliases() == {"champion": 1}
    done = jobs.get_job(project.store.db, project=project.name, job_id=job.id)
    assert done.status == "done"
    assert done.state["outcome"] == "rolled_back"
    assert done.state["delta"] < 0
    assert done.state["high"] < 0
    kinds = [e.kind for e in project.events(limit=200)]
    for kind in ("autopilot_retrained", "autopilot_promoted", "autopilot_rolled_back"):
        assert kind in kinds
    moves = [e.payload for e in project.events(kind="alias_set", limit=10)]
    back = next(m for m in moves if m.get("alias") == "champion")
    assert back["version"] == 1
    assert back["kind"] == "rollback"
    assert str(back["reason"]).startswith("autopilot watch")


@pytest.mark.hostile
def test_a_bad_stored_label_is_skipped_and_the_gate_keeps_the_champion(
    base: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    import shutil

    root = shutil.copytree(base[0], tmp_path / "flights")
    project = _configure(root, margin=0.5)  # a lead of 0.5 PR-AUC: no model earns it
    _log(project, _flights(base, 400), start=T0 - timedelta(hours=8), prefix="a", served=1)
    # A label the model does not know, stored as older versions allowed: the look and
    # the retrain leave it out and say so, instead of failing every pass.
    with project.store.db.write() as conn:
        conn.execute(
            feedback.update()
            .where(feedback.c.project == project.name, feedback.c.key == "req:a7:0")
            .values(label="banana")
        )
    said = Autopilot(project).tick(now=T0)
    assert said == ["retrained flights@3: gate rejected"]
    assert project.aliases()["champion"] == 1
    assert "shadow" not in project.aliases()
    job = jobs.list_jobs(project.store.db, project=project.name)[0]
    assert job.status == "done"
    assert job.state["outcome"] == "rejected"
    # The cooldown holds the next trip back.
    assert Autopilot(project).tick(now=T0 + timedelta(minutes=30)) == []
    assert len(jobs.list_jobs(project.store.db, project=project.name)) == 1
    # one event for the bad row, not one a pass
    (skipped,) = project.events(kind="labels_skipped")
    assert skipped.payload == {
        "source": "autopilot",
        "version": 1,
        "count": 1,
        "reasons": ["'banana' is not a class of 'late': expected one of [0, 1]"],
    }


@pytest.mark.hostile
def test_killed_mid_retrain_is_retried_once(
    project: Project, base: tuple[Path, pd.DataFrame]
) -> None:
    _log(project, _flights(base, 400), start=T0 - timedelta(hours=8), prefix="a", served=1)
    script = (
        "import sys; from datetime import datetime; "
        "from setpoint.project import Project; from setpoint.autopilot.loop import Autopilot; "
        "Autopilot(Project.open(sys.argv[1]), owner='doomed', lease_s=60)"
        ".tick(now=datetime.fromisoformat(sys.argv[2]))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(project.root), T0.isoformat()], env=env
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = jobs.list_jobs(project.store.db, project=project.name)
        if found and found[0].status == "running":
            break
        time.sleep(0.02)
    else:
        child.kill()
        pytest.fail("the child never claimed the job")
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    claimed = jobs.list_jobs(project.store.db, project=project.name)[0]
    assert claimed.stage is None
    assert claimed.owner == "doomed"

    # Before the lease runs out, no one else takes the job.
    survivor = Autopilot(project, owner="survivor")
    assert survivor.tick(now=T0 + timedelta(seconds=30)) == []
    # The lease ran out: the job waits a minute more (a crash backs off), then runs.
    assert survivor.tick(now=T0 + timedelta(seconds=61)) == []
    waiting = jobs.get_job(project.store.db, project=project.name, job_id=claimed.id)
    assert waiting.status == "queued"
    assert waiting.not_before == T0 + timedelta(seconds=120)
    assert "expired" in (waiting.error or "")
    said = survivor.tick(now=T0 + timedelta(seconds=121))
    assert said[0].startswith("retrained flights@3")
    job = jobs.get_job(project.store.db, project=project.name, job_id=claimed.id)
    assert job.stage == "shadow"
    claims = [e.payload for e in project.events(kind="job_claimed")]
    assert [(c["owner"], c["attempts"]) for c in reversed(claims)] == [
        ("doomed", 1),
        ("survivor", 2),
    ]
    made = [v.version for v in project.versions() if "autopilot" in v.lineage]
    assert made == [3]


@pytest.mark.hostile
def test_killed_after_registering_is_retried_without_a_second_model(
    project: Project, base: tuple[Path, pd.DataFrame]
) -> None:
    _log(project, _flights(base, 400), start=T0 - timedelta(hours=8), prefix="a", served=1)
    script = (
        "import sys; from datetime import datetime; "
        "from setpoint.project import Project; from setpoint.autopilot.loop import Autopilot; "
        "Autopilot(Project.open(sys.argv[1]), owner='doomed', lease_s=60)"
        ".tick(now=datetime.fromisoformat(sys.argv[2]))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(project.root), T0.isoformat()], env=env
    )
    try:
        deadline = time.monotonic() + 300
        while not any("autopilot" in v.lineage for v in project.versions()):
            if child.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the child registered no model (exit status {child.returncode})")
            time.sleep(0.01)
        # The child's next write (the gate's decision with the job's stage) waits for this
        # transaction's lock, so the kill lands after the registration, before the job moved.
        with project.store.db.write():
            (claimed,) = jobs.list_jobs(project.store.db, project=project.name)
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert (claimed.status, claimed.stage, claimed.owner) == ("running", None, "doomed")
    assert [v.version for v in project.versions()] == [1, 2, 3]

    survivor = Autopilot(project, owner="survivor")
    assert survivor.tick(now=T0 + timedelta(seconds=61)) == []  # the crash backs off
    said = survivor.tick(now=T0 + timedelta(seconds=121))
    assert said[0] == "retrained flights@3: gate passed", said
    job = jobs.get_job(project.store.db, project=project.name, job_id=claimed.id)
    assert (job.stage, job.state["version"]) == ("shadow", 3)
    made = [v.version for v in project.versions() if "autopilot" in v.lineage]
    assert made == [3]  # the retry found the model the killed attempt registered
    assert project.aliases() == {"champion": 1, "shadow": 3}
    registered = [e.payload["version"] for e in project.events(kind="model_registered")]
    assert sorted(registered) == [1, 2, 3]


def test_the_command_line(project: Project, base: tuple[Path, pd.DataFrame]) -> None:
    from _support.cli import run

    now = datetime.now(UTC)
    _log(project, _flights(base, 400), start=now - timedelta(hours=8), prefix="a", served=1)
    status = run("autopilot", "status", "-C", str(project.root), cwd=project.root)
    assert status.returncode == 0, status.stderr
    assert "realized" in status.stdout
    assert "fires" in status.stdout
    assert "a retrain may start now" in status.stdout

    once = run("autopilot", "--once", "-C", str(project.root), cwd=project.root)
    assert once.returncode == 0, once.stderr
    assert "retrained flights@3: gate passed" in once.stdout
    assert "flights@3 is in shadow" in once.stdout
    status = run("autopilot", "status", "-C", str(project.root), cwd=project.root)
    assert "cooldown" in status.stdout
    assert "shadow" in status.stdout  # the job's stage
    events = run(
        "events", "-C", str(project.root), "--kind", "autopilot_retrained", cwd=project.root
    )
    assert "version=3" in events.stdout


@pytest.mark.parametrize("command", [("autopilot", "--once"), ("serve", "--autopilot")])
def test_no_policy_on_the_command_line(
    base: tuple[Path, pd.DataFrame], command: tuple[str, ...]
) -> None:
    from _support.cli import run

    done = run(*command, "-C", str(base[0]), cwd=base[0])
    assert done.returncode == 2
    assert "no 'autopilot' section" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_with_the_autopilot_closes_the_loop_over_http(
    base: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    """`setpoint serve --autopilot`: real workers, real requests, the loop in its own process."""
    import shutil

    from _support.serving import serving
    from setpoint.client import Client

    root = shutil.copytree(base[0], tmp_path / "flights")
    policy = {
        **POLICY,
        "check_every": "1s",
        "shadow": {"requests": 50, "duration": "1s", "min_labels": 100},
    }
    project = _configure(root, margin=-1.0, policy=policy)
    flights = _flights(base, 600)
    labels = flights["late"].astype(int).tolist()
    with serving(root, args=("--autopilot",)) as server, Client(server.url) as client:
        sent = 0

        def send(n: int) -> None:
            nonlocal sent
            for i in range(sent, sent + n):
                answer = client.predict(records(flights, 1, start=i))
                client.feedback([{"request_id": answer.request_id, "index": 0, "label": labels[i]}])
            sent += n

        def wait_for(check: Any, what: str) -> None:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                if check():
                    return
                time.sleep(0.25)
            pytest.fail(f"{what} did not happen: {server.log()[-3000:]}")

        send(200)  # labelled traffic: the trigger trips on its first look
        wait_for(lambda: project.aliases().get("shadow") == 3, "the challenger in shadow")
        # The servers follow the alias and score the challenger beside the champion.
        wait_for(
            lambda: (client.models()["serving"]["shadow"] or {}).get("version") == 3, "a shadow"
        )
        send(200)
        wait_for(lambda: project.aliases().get("champion") == 3, "the promotion")
        assert project.aliases().get("shadow") == 1  # the old champion, for the watch
    kinds = {e.kind for e in project.events(limit=500)}
    assert {"job_claimed", "autopilot_retrained", "autopilot_promoted"} <= kinds
