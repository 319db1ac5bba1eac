"""The command line, run as a user runs it: a real process, real files, real data."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import numpy as np
import pytest
import sklearn

from _support.cli import run

SKLEARN_DATA = Path(sklearn.__file__).parent / "datasets" / "data"


def assert_user_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def test_help_reads_like_a_manual(tmp_path: Path) -> None:
    top = run("--help", cwd=tmp_path)
    assert top.returncode == 0
    for command in ("quickstart", "init", "data", "train", "model", "events"):
        assert command in top.stdout
    for sub in (["data", "ingest"], ["data", "quarantine"], ["model", "promote"], ["train"]):
        page = run(*sub, "--help", cwd=tmp_path)
        assert page.returncode == 0, page.stderr
        assert len(page.stdout.split()) > 30


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["model", "list"], ["setpoint.yaml", "setpoint init"]),
        (["train", "--version", "abc"], ["--version", "integer"]),
        (["train", "--version", "0"], ["--version", "greater than or equal to 1"]),
        (["data", "ingest"], ["setpoint.yaml"]),
        (["nonsense"], ["nonsense"]),
    ],
)
def test_bad_invocations_fail_cleanly(tmp_path: Path, args: list[str], words: list[str]) -> None:
    assert_user_error(run(*args, cwd=tmp_path), *words)


def _breast_cancer_csv(path: Path) -> None:
    """sklearn's breast cancer table, with an id and a synthetic time column."""
    raw = np.loadtxt(SKLEARN_DATA / "breast_cancer.csv", delimiter=",", skiprows=1)
    names = [f"f{i}" for i in range(raw.shape[1] - 1)]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "seen_at", *names, "malignant"])
        for i, row in enumerate(raw):
            day = f"2024-01-{1 + i % 28:02d}T{i % 24:02d}:00:00"
            writer.writerow([i, day, *row[:-1], int(row[-1] == 0)])


def test_a_project_from_init_to_rollback_on_unseen_data(tmp_path: Path) -> None:
    _breast_cancer_csv(tmp_path / "cancer.csv")
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
        cwd=tmp_path,
    )
    assert init.returncode == 0, init.stderr
    spec = (tmp_path / "setpoint.yaml").read_text()
    spec = spec.replace("bootstrap: 1000", "bootstrap: 200").replace(
        "family: lightgbm", "family: linear"
    )
    (tmp_path / "setpoint.yaml").write_text(spec)

    ingest = run("data", "ingest", cwd=tmp_path)
    assert ingest.returncode == 0, ingest.stderr
    assert "Stored events v1: 569 rows" in ingest.stdout
    again = run("data", "ingest", cwd=tmp_path)
    assert "Already ingested as events v1" in again.stdout

    first = run("train", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "Registered cancer@1" in first.stdout
    assert "passed" in first.stdout

    second = run("train", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "Registered cancer@2" in second.stdout
    assert "not passed" in second.stdout  # an identical model has no lead to show

    forced = run("model", "promote", "2", "--force", "--reason", "test override", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert "Promoted anyway (forced): champion is cancer@2" in forced.stdout
    listing = run("model", "list", cwd=tmp_path)
    assert "champion" in listing.stdout
    back = run("model", "rollback", "--reason", "test", cwd=tmp_path)
    assert "cancer@1 again" in back.stdout
    history = run("model", "history", cwd=tmp_path)
    cells = [[c.strip() for c in line.split("│")] for line in history.stdout.splitlines()]
    assert ["rollback", "user", "test"] in [row[5:8] for row in cells]  # kind, by, reason
    assert "forced past a failed gate" in history.stdout

    show = run("model", "show", "1", cwd=tmp_path)
    assert "artifact" in show.stdout
    assert "lightgbm" in show.stdout or "linear" in show.stdout
    events = run("events", cwd=tmp_path)
    for kind in ("dataset_ingested", "model_registered", "gate_decision", "alias_set"):
        assert kind in events.stdout


def test_bad_batch_is_quarantined_or_refused(tmp_path: Path) -> None:
    _breast_cancer_csv(tmp_path / "cancer.csv")
    assert (
        run(
            "init",
            "--project",
            "cancer",
            "--target",
            "malignant",
            "--entity",
            "id",
            "--source",
            "cancer.csv",
            cwd=tmp_path,
        ).returncode
        == 0
    )
    assert run("data", "ingest", cwd=tmp_path).returncode == 0
    rows = (tmp_path / "cancer.csv").read_text().splitlines()
    header, body = rows[0], rows[1:]
    shifted = [f"{1000 + i}," + line.split(",", 1)[1] for i, line in enumerate(body[:100])]
    bad = [line.replace(line.split(",")[3], "abc", 1) for line in shifted[:3]]
    (tmp_path / "few_bad.csv").write_text("\n".join([header, *bad, *shifted[3:]]) + "\n")
    ok = run("data", "ingest", "few_bad.csv", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "3 quarantined" in ok.stdout
    export = run("data", "quarantine", "--export", "q.csv", cwd=tmp_path)
    assert "Wrote 3 quarantined rows" in export.stdout
    assert (tmp_path / "q.csv").read_text().count("type_mismatch") == 3

    many_bad = [line.replace(line.split(",")[3], "abc", 1) for line in body[:100]]
    (tmp_path / "many_bad.csv").write_text("\n".join([header, *many_bad]) + "\n")
    refused = run("data", "ingest", "many_bad.csv", cwd=tmp_path)
    assert_user_error(refused, "refused", "many_bad.csv")
    listing = run("data", "list", cwd=tmp_path)
    assert "many_bad" not in listing.stdout
