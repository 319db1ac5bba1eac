"""A new user's first projects, driven through the real command line on data setpoint never saw.

The tables are the CSVs that ship inside scikit-learn (iris, wine, breast cancer,
diabetes), cleaned of their odd first line and reshaped the way real exports
look: string labels, string and integer ids, no timestamp or one in another
format, column names with spaces and accents, booleans, a date that is not the
timestamp, free text. Each task goes through ingest, train, promote.
"""

from __future__ import annotations

import csv
import gzip
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sklearn

from _support.cli import run
from setpoint.project import Project
from setpoint.registry.datasets import load_dataset

SKLEARN_DATA = Path(sklearn.__file__).parent / "datasets" / "data"
FAST_GATE = {"bootstrap: 1000": "bootstrap: 200"}
FEW_TREES = {"family: lightgbm": "family: lightgbm\n  params: {n_estimators: 30}", **FAST_GATE}
LINEAR = {"family: lightgbm": "family: linear", **FAST_GATE}


def ok(*args: str, cwd: Path) -> str:
    result = run(*args, cwd=cwd)
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result.stdout


def sklearn_csv(name: str) -> tuple[list[str], list[list[str]]]:
    """A table shipped with scikit-learn, without its odd first line (counts and labels)."""
    with (SKLEARN_DATA / name).open(newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def start(root: Path, *init: str, edits: dict[str, str]) -> None:
    """``setpoint init`` as a user types it, then the spec edits a user makes by hand."""
    ok("init", *init, cwd=root)
    spec = root / "setpoint.yaml"
    text = spec.read_text(encoding="utf-8")
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    spec.write_text(text, encoding="utf-8")


def rows_in(root: Path, table: str) -> int:
    with sqlite3.connect(root / ".setpoint" / "setpoint.db") as conn:
        count: int = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return count


def customers(rows: list[list[str]], first: int) -> list[list[object]]:
    """Breast-cancer rows dressed as a churn table with the shapes of a real export."""
    rng = np.random.default_rng(first)
    out: list[list[object]] = []
    for offset, row in enumerate(rows):
        i = first + offset
        out.append(
            [
                f"C-{i:05d}",  # string ids
                f"2023-{1 + i % 12:02d}-{1 + i % 28:02d}",  # a date, not the timestamp
                f"2024-{1 + i // 60:02d}-{1 + i % 28:02d}T{i % 24:02d}:00:00+02:00",
                row[0],  # accents and spaces in the names below
                row[1],
                row[2],
                row[20],
                "true" if i % 3 == 0 else "false",  # a boolean
                f"called about invoice {rng.integers(10**6)} on line {i}",  # free text
                ["north", "south", "east", "west"][i % 4],
                "yes" if row[-1] == "0" else "no",  # string labels; "0" is malignant
            ]
        )
    return out


CUSTOMER_COLUMNS = [
    "customer id",
    "signed up",
    "event time",
    "température",
    "größe",
    "rayon moyen",
    "worst radius",
    "is_vip",
    "notes",
    "region",
    "churned",
]


def test_binary_churn_with_string_labels_ids_unicode_and_segments(tmp_path: Path) -> None:
    _, rows = sklearn_csv("breast_cancer.csv")
    write_csv(tmp_path / "customers.csv", CUSTOMER_COLUMNS, customers(rows[:420], 0))
    start(
        tmp_path,
        *("--project", "churn", "--target", "churned", "--entity", "customer id"),
        *("--timestamp", "event time", "--source", "customers.csv"),
        edits={
            **FEW_TREES,
            "segments: []": "segments: [region]",
            # Later months may go beyond the first month's ranges; that is not an error here.
            "out_of_range: quarantine": "out_of_range: accept",
        },
    )
    assert "Stored events v1: 420 rows, 0 quarantined" in ok("data", "ingest", cwd=tmp_path)
    schema = ok("data", "schema", cwd=tmp_path)
    for column, kind in [
        ("customer id", "text"),
        ("signed up", "datetime"),
        ("event time", "datetime"),
        ("température", "numeric"),
        ("is_vip", "boolean"),
        ("notes", "text"),
        ("region", "categorical"),
        ("churned", "categorical"),
    ]:
        assert any(column in line and kind in line for line in schema.splitlines()), column

    first = ok("train", cwd=tmp_path)
    assert "Registered churn@1" in first
    assert "passed" in first
    # Columns left out are named, not dropped in silence.
    assert "signed up (datetime columns are not trained on)" in first
    assert "notes (text columns are not trained on)" in first
    lineage = Project.open(tmp_path).versions()[0].lineage
    assert "is_vip" in lineage["features"]["numeric"]
    assert lineage["features"]["categorical"] == ["region"]

    # A later batch with three bad rows: they are quarantined, with reasons.
    later = customers(rows[420:], 420)
    later[0][3] = "n/a?"
    later[1][9] = "atlantis"
    later[2][0] = later[3][0]  # the same id twice
    write_csv(tmp_path / "later.csv", CUSTOMER_COLUMNS, later)
    assert "3 quarantined" in ok("data", "ingest", "later.csv", cwd=tmp_path)
    quarantined = ok("data", "quarantine", cwd=tmp_path)
    for reason in ("type_mismatch température", "unseen_category region", "duplicate_id"):
        assert reason in quarantined

    second = ok("train", cwd=tmp_path)
    assert "Registered churn@2" in second
    # Whichever way the gate went, force the other version in, then roll back.
    before = Project.open(tmp_path).aliases()["champion"]
    other = 3 - before
    forced = ok("model", "promote", str(other), "--force", "--reason", "try it", cwd=tmp_path)
    assert f"Gate for version {other}" in forced
    assert Project.open(tmp_path).aliases()["champion"] == other
    assert "already the champion" in ok("model", "promote", str(other), cwd=tmp_path)
    rolled = ok("model", "rollback", "--reason", "checking", cwd=tmp_path)
    assert f"churn@{before} again" in rolled
    history = ok("model", "history", cwd=tmp_path)
    cells = [[c.strip() for c in line.split("│")] for line in history.splitlines()]
    assert ["rollback", "user", "checking"] in [row[5:8] for row in cells]  # kind, by, reason
    shown = ok("model", "show", "2", cwd=tmp_path)
    assert "events v2" in shown
    events = ok("events", cwd=tmp_path)
    for kind in ("dataset_ingested", "model_registered", "gate_decision", "alias_set"):
        assert kind in events
    assert rows_in(tmp_path, "quarantine") == 3


@pytest.mark.parametrize(
    ("name", "target", "labels"),
    [
        ("iris.csv", "species", ["setosa", "versicolor", "virginica"]),
        ("wine_data.csv", "cultivar", ["class_0", "class_1", "class_2"]),
    ],
)
def test_multiclass_string_target_without_timestamp(
    tmp_path: Path, name: str, target: str, labels: list[str]
) -> None:
    first_line, rows = sklearn_csv(name)
    n_features = int(first_line[1])
    # iris's names carry spaces and units, as exports do.
    header = (
        ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
        if name == "iris.csv"
        else [f"w{i}" for i in range(n_features)]
    )
    table = [[i, *row[:-1], labels[int(row[-1])]] for i, row in enumerate(rows)]
    write_csv(tmp_path / "flowers.csv", ["id", *header, target], table)
    start(
        tmp_path,
        *("--project", "multi", "--task", "multiclass", "--target", target),
        *("--entity", "id", "--source", "flowers.csv"),
        edits={**LINEAR, 'metric: ""': "metric: macro_f1"},
    )
    assert f"Stored events v1: {len(rows)} rows" in ok("data", "ingest", cwd=tmp_path)
    trained = ok("train", cwd=tmp_path)
    assert "Registered multi@1" in trained
    assert "macro_f1" in trained
    listing = ok("model", "list", cwd=tmp_path)
    assert "test macro_f1" in listing
    assert "champion" in listing
    model = Project.open(tmp_path).load_model("champion")
    assert sorted(model.classes) == labels
    predicted = model.predict(pd.DataFrame([dict(zip(header, rows[0][:-1], strict=True))]))
    assert predicted.tolist()[0] in labels


def _diabetes(path: Path) -> None:
    """Regression: integer patient ids and a timestamp written with a space, not a 'T'."""
    with gzip.open(SKLEARN_DATA / "diabetes_data_raw.csv.gz", "rt") as handle:
        features = np.loadtxt(handle)
    with gzip.open(SKLEARN_DATA / "diabetes_target.csv.gz", "rt") as handle:
        target = np.loadtxt(handle)
    header = ["patient_id", "visit", "age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5"]
    rows = [
        [1000 + i, f"2024-{1 + i // 40:02d}-{1 + i % 28:02d} {i % 24:02d}:30:00", *x[:9], y]
        for i, (x, y) in enumerate(zip(features, target, strict=True))
    ]
    write_csv(path, [*header, "progression"], rows)


def test_regression_with_integer_ids_and_a_space_separated_timestamp(tmp_path: Path) -> None:
    _diabetes(tmp_path / "visits.csv")
    start(
        tmp_path,
        *("--project", "diabetes", "--task", "regression", "--target", "progression"),
        *("--entity", "patient_id", "--timestamp", "visit", "--source", "visits.csv"),
        edits=LINEAR,
    )
    assert "Stored events v1: 442 rows" in ok("data", "ingest", cwd=tmp_path)
    schema = ok("data", "schema", cwd=tmp_path)
    assert any("visit" in line and "datetime" in line for line in schema.splitlines())
    assert "rmse" in ok("train", cwd=tmp_path)
    second = ok("train", cwd=tmp_path)
    assert "Registered diabetes@2" in second
    assert "not passed" in second  # the same recipe on the same data shows no lead
    gated = ok("model", "promote", "2", "--reason", "try", cwd=tmp_path)
    assert "not passed" in gated
    assert "champion" in ok("model", "list", cwd=tmp_path)
    project = Project.open(tmp_path)
    assert project.aliases() == {"champion": 1, "challenger": 2}
    frame = pd.read_csv(tmp_path / "visits.csv").head(3)
    predictions = project.load_model("champion").predict(frame)
    assert np.isfinite(np.asarray(predictions, dtype=float)).all()


@pytest.mark.parametrize(
    ("make_id", "kind"),
    [
        (lambda i: str(10**29 + i), "text"),  # 30 digits: as floats they would collide
        (lambda i: f"{i:06d}", "text"),  # zero-padded: as numbers 000042 would become 42
        (lambda i: str(2**62 + i), "numeric"),  # big, but a 64-bit integer
    ],
    ids=["30-digit", "zero-padded", "int64"],
)
def test_ids_keep_every_digit(tmp_path: Path, make_id: Callable[[int], str], kind: str) -> None:
    def batch(path: Path, ids: range) -> None:
        rows = [[make_id(i), i % 10, "yes" if i % 2 else "no"] for i in ids]
        write_csv(path, ["account", "balance", "churned"], rows)

    batch(tmp_path / "a.csv", range(40))
    batch(tmp_path / "b.csv", range(40, 80))
    start(tmp_path, "--project", "ids", "--target", "churned", "--entity", "account", edits={})
    assert "0 quarantined" in ok("data", "ingest", "a.csv", cwd=tmp_path)
    assert any(
        "account" in line and kind in line
        for line in ok("data", "schema", cwd=tmp_path).split("\n")
    )
    # From another folder, with --dir: the file path is the shell's, relative to where we are.
    here = tmp_path.parent
    second = ok("data", "ingest", f"{tmp_path.name}/b.csv", "--dir", tmp_path.name, cwd=here)
    assert "0 quarantined" in second
    frame, _ = load_dataset(Project.open(tmp_path).store, project="ids")
    assert frame["account"].astype("str").tolist() == [make_id(i) for i in range(80)]
