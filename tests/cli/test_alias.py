"""``setpoint model alias``: point shadow or canary at a version by hand; never champion."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import numpy as np
import pytest
import sklearn

from _support.cli import run
from setpoint.project import Project
from setpoint.registry.aliases import AliasChange, alias_history_of
from setpoint.store.workspace import Store

SKLEARN_DATA = Path(sklearn.__file__).parent / "datasets" / "data"


def assert_user_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, f"{word!r} not in: {result.stderr}"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with one trained version (breast cancer data, linear model)."""
    root = tmp_path_factory.mktemp("alias")
    raw = np.loadtxt(SKLEARN_DATA / "breast_cancer.csv", delimiter=",", skiprows=1)
    with (root / "cancer.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "seen_at", "f0", "f1", "f2", "f3", "malignant"])
        for i, row in enumerate(raw):
            seen = f"2024-01-{1 + i % 28:02d}T{i % 24:02d}:00:00"
            writer.writerow([i, seen, *row[:4], int(row[-1] == 0)])
    init = run(
        "init",
        "--project",
        "cancer",
        "--target",
        "malignant",
        "--timestamp",
        "seen_at",
        "--entity",
        "id",
        "--source",
        "cancer.csv",
        cwd=root,
    )
    assert init.returncode == 0, init.stderr
    spec = root / "setpoint.yaml"
    text = spec.read_text().replace("bootstrap: 1000", "bootstrap: 200")
    spec.write_text(text.replace("family: lightgbm", "family: linear"))
    project = Project.open(root)
    try:
        project.ingest(None, name="events")
        project.train(dataset="events")
    finally:
        project.store.db.dispose()
    return root


def test_set_and_unset_an_alias_with_its_history(project: Path) -> None:
    done = run("model", "alias", "set", "shadow", "1", "--reason", "try it", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "shadow is cancer@1" in done.stdout
    assert "shadow" in run("model", "list", cwd=project).stdout

    removed = run("model", "alias", "unset", "shadow", cwd=project)
    assert removed.returncode == 0, removed.stderr
    assert "cancer@1" in removed.stdout
    assert "shadow" not in run("model", "list", cwd=project).stdout
    history = run("model", "history", "--alias", "shadow", cwd=project).stdout
    assert "try it" in history
    assert "unset by hand" in history


def history_rows(output: str) -> list[list[str]]:
    """The cells of each body row of a table printed by the CLI."""
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in output.splitlines()]
    return [row for row in rows if row and row[0][:1].isdigit()]


def test_history_and_events_show_what_kind_of_change_moved_an_alias(project: Path) -> None:
    again = run("train", cwd=project)
    assert again.returncode == 0, again.stderr
    assert "Registered cancer@2" in again.stdout
    assert "not passed" in again.stdout  # an identical model has no lead to show
    forced = run("model", "promote", "2", "--force", "--reason", "rollback: of v1", cwd=project)
    assert forced.returncode == 0, forced.stderr
    assert "Promoted anyway (forced): champion is cancer@2" in forced.stdout
    back = run("model", "rollback", "--reason", "v2 is no better", cwd=project)
    assert "champion is cancer@1 again" in back.stdout
    done = run("model", "alias", "set", "baseline", "1", cwd=project)
    assert done.returncode == 0, done.stderr

    history = run("model", "history", cwd=project)
    assert history.returncode == 0, history.stderr
    header = next(line for line in history.stdout.splitlines() if "reason" in line)
    assert [cell.strip() for cell in header.split("┃")[1:-1]] == [
        "at (UTC)",
        "alias",
        "version",
        "previous",
        "kind",
        "by",
        "reason",
    ]
    rows = history_rows(history.stdout)[-4:]
    # (alias, version, previous, kind, by) of the last four changes, then their reasons
    assert [row[1:6] for row in rows] == [
        ["challenger", "2", "-", "challenger", "gate"],
        ["champion", "2", "1", "promote", "user"],
        ["champion", "1", "2", "rollback", "user"],
        ["baseline", "1", "-", "set", "user"],
    ]
    assert rows[1][6].endswith("rollback: of v1")  # a promote, whatever its reason says
    assert [row[6] for row in rows[2:]] == ["v2 is no better", "set by hand"]
    events = run("events", "--kind", "alias_set", "--limit", "4", cwd=project)
    assert "alias=champion, kind=rollback" in events.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["set", "champion", "1"], ["'NAME'", "setpoint model promote", "gate"]),
        (["unset", "champion"], ["'NAME'", "setpoint model rollback"]),
        (["set", "my-alias", "1"], ["'NAME'", "'my-alias'"]),
        (["set", "canary", "9"], ["cancer@9"]),
        (["set", "canary", "0"], ["VERSION"]),
        (["unset", "canary"], ["No alias named 'canary'"]),
    ],
)
def test_bad_alias_commands_fail_cleanly(project: Path, args: list[str], words: list[str]) -> None:
    before = _history(project)
    assert_user_error(run("model", "alias", *args, cwd=project), *words)
    assert _history(project) == before


def _history(root: Path) -> list[AliasChange]:
    store = Store.open(root)
    try:
        return alias_history_of(store.db, project="cancer")
    finally:
        store.db.dispose()
