"""``setpoint monitor`` on the log of a real ``setpoint serve``, run as a user runs it.

Held-out January flights go through the real server, then flights whose
temperature is 30 degrees higher; labels come back through ``/v1/feedback``,
by request id for most and by flight id for some. The server stamps its own
clock, so the windows here are counts of predictions.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pandas as pd
import pytest

from _support.cli import run as setpoint
from _support.serving import copy_project, records, serving

PER_WINDOW = 400
BATCH = 50


def assert_user_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, f"{word!r} not in: {result.stderr}"


@pytest.fixture(scope="module")
def base(flights_project: Path, flight_events: pd.DataFrame) -> tuple[Path, pd.DataFrame]:
    """The session's flights project (tests copy it) and held-out flights to serve."""
    ordered = flight_events.sort_values("scheduled_at").reset_index(drop=True)
    pool = ordered.iloc[int(len(ordered) * 0.8) :].sample(3 * PER_WINDOW, random_state=2)
    return flights_project, pool.reset_index(drop=True)


@pytest.fixture(scope="module")
def served(
    base: tuple[Path, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[int]]:
    """A served copy: 2 windows of ordinary traffic, then 1 of warmer days; some labels."""
    root = copy_project(base[0], tmp_path_factory.mktemp("served") / "flights")
    pool = base[1]
    recs = records(pool, len(pool))
    for rec in recs[2 * PER_WINDOW :]:
        if rec["temp"] is not None:
            rec["temp"] = min(rec["temp"] + 30.0, 130.0)
    late = [int(v) for v in pool["late"]]
    feedback = []
    with serving(root) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        for start in range(0, len(recs), BATCH):
            answer = http.post("/v1/predict", json={"records": recs[start : start + BATCH]})
            assert answer.status_code == 200, answer.text
            rid = answer.json()["request_id"]
            if start < 150:  # the first 150 predictions, by request id and index
                feedback += [
                    {"request_id": rid, "index": i, "label": late[start + i]} for i in range(BATCH)
                ]
        # 40 predictions of the second window, by flight id
        feedback += [
            {"entity_id": recs[i]["flight_id"], "label": late[i]}
            for i in range(PER_WINDOW, PER_WINDOW + 40)
        ]
        stored = http.post("/v1/feedback", json={"feedback": feedback})
        assert stored.status_code == 200, stored.text
        assert stored.json()["stored"] == 190
    return root, late


def test_monitor_json_finds_the_shift_and_the_labels(served: tuple[Path, list[int]]) -> None:
    result = setpoint(
        "monitor",
        "--window",
        f"{PER_WINDOW}rows",
        "--clock",
        "served",
        "--format",
        "json",
        cwd=served[0],
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    windows = payload["windows"]
    assert [w["n"] for w in windows] == [PER_WINDOW] * 3
    assert [w["versions"] for w in windows] == [["1"]] * 3
    temp = [
        next(f for f in w["drift"]["features"] if f["name"] == "temp")["drifted"] for w in windows
    ]
    assert temp == [False, False, True]
    assert [w["n_labelled"] for w in windows] == [150, 40, 0]
    assert windows[0]["realized"]["n"] == 150
    assert windows[0]["realized"]["metrics"]["pr_auc"]["value"] is not None
    assert windows[2]["realized"] is None
    for w in windows:
        assert w["estimate"]["metrics"]["pr_auc"]["value"] is not None
    assert windows[0]["error"]["metrics"]["pr_auc"]["error"] is not None


def test_monitor_table_names_the_drifted_feature(served: tuple[Path, list[int]]) -> None:
    result = setpoint(
        "monitor",
        "-C",
        str(served[0]),
        "--window",
        f"{PER_WINDOW}rows",
        "--clock",
        "served",
        cwd=served[0].parent,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "realized pr_auc" in out
    assert "estimated pr_auc" in out
    assert "(n=150)" in out
    assert "features in the latest window" in out
    latest = out.split("features in the latest window")[1]
    temp_row = next(line for line in latest.splitlines() if " temp " in line)
    assert "yes" in temp_row


def test_a_second_run_reads_unchanged_windows_back(served: tuple[Path, list[int]]) -> None:
    command = (
        "monitor",
        "-C",
        str(served[0]),
        "--window",
        f"{PER_WINDOW}rows",
        "--clock",
        "served",
    )
    first = setpoint(*command, "--recompute", "--format", "json", cwd=served[0].parent)
    assert first.returncode == 0, first.stderr
    computed = json.loads(first.stdout)
    assert computed["reused"] == 0
    again = setpoint(*command, "--format", "json", cwd=served[0].parent)
    assert again.returncode == 0, again.stderr
    read_back = json.loads(again.stdout)
    assert read_back["reused"] == len(computed["windows"]) > 1
    assert read_back["windows"] == computed["windows"]
    table = setpoint(*command, cwd=served[0].parent)
    n = len(computed["windows"])
    assert f"{n} of {n} windows read back from the store" in table.stdout


def test_bad_window_and_dates_are_refused(served: tuple[Path, list[int]]) -> None:
    root = served[0]
    assert_user_error(setpoint("monitor", "--window", "3x", cwd=root), "--window", "5000rows")
    assert_user_error(setpoint("monitor", "--since", "yesterday", cwd=root), "--since", "ISO")
    assert_user_error(
        setpoint("monitor", "--since", "2030-01-02", "--until", "2030-01-01", cwd=root),
        "not before",
    )
    assert_user_error(
        setpoint("monitor", "--since", "2030-01-01", "--clock", "served", cwd=root), "No served"
    )


def test_no_predictions_yet_suggests_serve_and_replay(
    base: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    root = copy_project(base[0], tmp_path / "flights")
    result = setpoint("monitor", cwd=root)
    assert_user_error(result, "setpoint serve", "setpoint replay")


@pytest.mark.hostile
def test_a_bad_stored_label_is_skipped_and_counted(logged_project: Path, tmp_path: Path) -> None:
    # Labels an older version took without judging them, or rows written by hand: the
    # monitor must count them and go on, not exit on the first one.
    import shutil
    from datetime import UTC, datetime

    import sqlalchemy as sa

    from setpoint.project import Project
    from setpoint.registry.events import list_events
    from setpoint.registry.stored_windows import load_windows
    from setpoint.store.tables import feedback

    root = shutil.copytree(logged_project, tmp_path / "flights")
    project = Project.open(root)
    now = datetime.now(UTC)
    with project.store.db.write() as conn:
        conn.execute(
            feedback.update()
            .where(feedback.c.project == "flights", feedback.c.key == "req:w0-5:0")
            .values(label="banana")
        )
        conn.execute(
            feedback.insert().values(
                project="flights",
                key="req:w2-3:0",
                request_id="w2-3",
                idx=0,
                entity_id=None,
                label=[1],
                event_time=now,
                received_at=now,
            )
        )
    project.store.db.dispose()
    command = ("monitor", "--window", "1w", "--clock", "served", "--format", "json")
    result = setpoint(*command, cwd=root)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    found = json.loads(result.stdout)
    weeks = found["windows"]
    assert [w["labels_skipped"] for w in weeks] == [1, 0, 1]
    assert weeks[0]["labels_skipped_reasons"] == [
        "'banana' is not a class of 'late': expected one of [0, 1]"
    ]
    assert weeks[2]["labels_skipped_reasons"] == [
        "[1] is not a class of 'late': expected one of [0, 1]"
    ]
    assert [w["n_labelled"] for w in weeks] == [299, 300, 0]
    assert weeks[0]["realized"] is not None  # the other 299 labels are judged
    assert any(w.startswith("2 stored label(s) were skipped") for w in found["warnings"])
    reopened = Project.open(root)
    stored = load_windows(
        reopened.store.db, project="flights", version=1, window="1w", clock="served"
    )
    assert [w.result["labels_skipped"] for w in stored] == [1, 0, 1]
    (event,) = list_events(reopened.store.db, project="flights", kind="labels_skipped")
    assert (event.payload["source"], event.payload["count"]) == ("monitor", 2)
    with reopened.store.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(feedback)).scalar_one() == 601
