"""Bad input at every entry point gets a clear error and loses nothing.

Each case runs the real command line in a copy of one small project (breast
cancer data, one batch ingested, one model trained) and checks the rule: exit
code 2, no traceback, a message that names the file, column, key, line or flag
at fault, and a store exactly as it was (every table but the audit log, which
may only gain an ``ingest_refused`` event, and every artifact). The Python API
gets the same bad files.
"""

from __future__ import annotations

import csv
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sklearn

from _support.cli import run
from setpoint.errors import InvalidParameterError, NotFoundError, SchemaError, SetpointError
from setpoint.project import Project

SKLEARN_DATA = Path(sklearn.__file__).parent / "datasets" / "data"
HEADER = ["id", "seen_at", "f0", "f1", "f2", "f3", "diagnosis"]
STATE_TABLES = (
    "projects",
    "schemas",
    "datasets",
    "quarantine",
    "model_versions",
    "aliases",
    "alias_history",
    "gate_decisions",
)


def assert_user_error(result: subprocess.CompletedProcess[str], words: list[str]) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "Exception ignored" not in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, f"{word!r} not in: {result.stderr}"


def cancer_rows(first: int, last: int) -> list[list[object]]:
    """Rows of sklearn's breast cancer table (first line dropped) with an id and a time."""
    with (SKLEARN_DATA / "breast_cancer.csv").open(newline="") as handle:
        raw = list(csv.reader(handle))[1:]
    return [
        [i, f"2024-01-{1 + i % 28:02d}T{i % 24:02d}:00:00Z", *raw[i][:4], raw[i][-1] == "0"]
        for i in range(first, last)
    ]


def write_csv(path: Path, rows: list[list[object]], header: list[str] = HEADER) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(
            ["yes" if v is True else "no" if v is False else v for v in row] for row in rows
        )
    return path


def snapshot(root: Path) -> dict[str, object]:
    """Everything a bad input must leave as it was."""
    db = root / ".setpoint" / "setpoint.db"
    with sqlite3.connect(db) as conn:
        state: dict[str, object] = {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            for table in STATE_TABLES
        }
        state["events"] = conn.execute(
            "SELECT * FROM events WHERE kind != 'ingest_refused' ORDER BY id"
        ).fetchall()
    artifacts = root / ".setpoint" / "artifacts"
    state["artifacts"] = sorted(str(p.relative_to(artifacts)) for p in artifacts.rglob("*"))
    state["spec"] = (root / "setpoint.yaml").read_text(encoding="utf-8")
    return state


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with one batch of 300 rows ingested and one linear model as champion."""
    root = tmp_path_factory.mktemp("base")
    write_csv(root / "cancer.csv", cancer_rows(0, 300))
    init = run(
        *("init", "--project", "cancer", "--target", "diagnosis", "--entity", "id"),
        *("--timestamp", "seen_at", "--source", "cancer.csv"),
        cwd=root,
    )
    assert init.returncode == 0, init.stderr
    spec = root / "setpoint.yaml"
    text = spec.read_text().replace("family: lightgbm", "family: linear")
    spec.write_text(text.replace("bootstrap: 1000", "bootstrap: 200"))
    for args in (["data", "ingest"], ["train"]):
        done = run(*args, cwd=root)
        assert done.returncode == 0, done.stderr
    return root


@pytest.fixture
def project(base: Path, tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(base, root)
    return root


def later(**change: Callable[[list[object]], None]) -> list[list[object]]:
    """A second batch of 100 new rows, each changed by the given functions."""
    rows = cancer_rows(300, 400)
    for edit in change.values():
        for row in rows:
            edit(row)
    return rows


def set_column(name: str, value: Callable[[int], object]) -> Callable[[list[object]], None]:
    index = HEADER.index(name)

    def edit(row: list[object]) -> None:
        row[index] = value(int(str(row[0])))

    return edit


@dataclass(frozen=True)
class Case:
    """``setpoint <args>`` after writing ``files`` (bytes, or rows under HEADER)."""

    args: list[str]
    words: list[str]
    files: dict[str, bytes | list[list[object]]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    spec: Callable[[str], str] | None = None
    header: list[str] = field(default_factory=lambda: list(HEADER))


def _text(rows: list[list[object]], header: list[str] = HEADER) -> str:
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    return "\n".join(lines) + "\n"


GOOD = _text(cancer_rows(300, 400))
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8

FILE_CASES: dict[str, tuple[bytes, list[str]]] = {
    "empty.csv": (b"", ["empty.csv", "is empty (0 bytes)"]),
    "header_only.csv": (_text([]).encode(), ["header_only.csv", "no rows"]),
    "cut.csv": (GOOD.encode()[: len(GOOD) // 2 + 7], ["cut.csv", "line ", "fields"]),
    "latin1.csv": (
        GOOD.replace("2024-01-02", "caf\u00e9").encode("latin-1"),
        ["latin1.csv", "not valid utf-8", "line ", "encoding:"],
    ),
    "utf16.csv": (GOOD.encode("utf-16"), ["utf16.csv", "utf-16"]),
    "picture.csv": (PNG, ["picture.csv", "not valid utf-8"]),
    "dup_columns.csv": (
        GOOD.replace("f2,f3", "f2,f2", 1).encode(),
        ["dup_columns.csv", "duplicate column names", "'f2'"],
    ),
    "index.csv": (
        ("," + GOOD.replace("\n", "\n0,")[:-2]).encode(),
        ["index.csv", "position", "no name"],
    ),
    "notes.txt": (GOOD.encode(), ["notes.txt", "'.txt'", "format"]),
}


def _batch(rows: list[list[object]], header: list[str] = HEADER) -> bytes:
    return _text(rows, header).encode()


BATCH_CASES: dict[str, tuple[bytes, list[str]]] = {
    # A numeric column with words in it: the batch is refused, naming the column.
    "mixed.csv": (
        _batch(later(f0=set_column("f0", lambda i: "abc" if i % 2 else i))),
        ["mixed.csv", "refused", "type_mismatch", "'f0'"],
    ),
    "all_null.csv": (
        _batch(later(f1=set_column("f1", lambda i: ""))),
        ["all_null.csv", "refused", "'f1'"],
    ),
    "huge.csv": (
        _batch(later(f2=set_column("f2", lambda i: "1e308" if i % 2 else str(10**30)))),
        ["huge.csv", "out_of_range", "'f2'"],
    ),
    "inf.csv": (
        _batch(later(f3=set_column("f3", lambda i: "inf" if i % 2 else "-inf"))),
        ["inf.csv", "non_finite", "'f3'"],
    ),
    "nan_target.csv": (
        _batch(later(y=set_column("diagnosis", lambda i: "NaN"))),
        ["nan_target.csv", "missing_target", "'diagnosis'"],
    ),
    "missing_column.csv": (
        _batch([[*r[:2], *r[3:]] for r in cancer_rows(300, 400)], [*HEADER[:2], *HEADER[3:]]),
        ["missing_column.csv", "required columns are missing", "'f0'"],
    ),
    "renamed_id.csv": (
        _batch(cancer_rows(300, 400), ["ID", *HEADER[1:]]),
        ["renamed_id.csv", "'id'", "'ID'"],
    ),
    "retyped.csv": (
        _batch(later(f1=set_column("f1", lambda i: f"v{i}"))),
        ["retyped.csv", "'f1'", "do not convert to numeric"],
    ),
    "timestamps.csv": (
        _batch(later(t=set_column("seen_at", lambda i: f"{1 + i % 28:02d}/01/2024"))),
        ["timestamps.csv", "unparseable_timestamp", "'seen_at'"],
    ),
    "repeated_ids.csv": (
        _batch(cancer_rows(0, 100)[::-1]),
        ["repeated_ids.csv", "duplicate_id", "'id'"],
    ),
}


def _edit(old: str, new: str) -> Callable[[str], str]:
    def apply(text: str) -> str:
        assert old in text, old
        return text.replace(old, new)

    return apply


CLI_CASES: dict[str, Case] = {
    **{
        f"file-{name}": Case(["data", "ingest", name], words, files={name: data})
        for name, (data, words) in {**FILE_CASES, **BATCH_CASES}.items()
    },
    "file-directory": Case(["data", "ingest", "folder.csv"], ["folder.csv", "is a directory"]),
    "file-missing": Case(["data", "ingest", "cancr.csv"], ["cancr.csv", "not found", "cancer.csv"]),
    # The spec.
    "spec-typo": Case(
        ["data", "ingest"],
        ["setpoint.yaml:", "validation.max_bad_shar", "unknown key"],
        spec=_edit("max_bad_share", "max_bad_shar"),
    ),
    "spec-bad-value": Case(
        ["train"],
        ["setpoint.yaml:", "gate.bootstrap"],
        spec=_edit("bootstrap: 200", "bootstrap: x"),
    ),
    "spec-test-from": Case(
        ["train"],
        ["setpoint.yaml:", "model.split", "'someday'"],
        spec=_edit("test_fraction: 0.15}", 'test_from: "someday"}'),
    ),
    "spec-target-gone": Case(
        ["train"], ["target", "'label'", "schema v1"], spec=_edit("diagnosis", "label")
    ),
    "spec-segment-gone": Case(
        ["train"], ["segments[0]", "'region'"], spec=_edit("segments: []", "segments: [region]")
    ),
    "spec-feature-gone": Case(
        ["train"],
        ["features.f9", "'f9'"],
        spec=_edit("features: {}", "features: {f9: {exclude: true}}"),
    ),
    "spec-feature-retyped": Case(
        ["data", "ingest", "later.csv"],
        ["features.f0.type", "'categorical'", "--new-schema"],
        files={"later.csv": _batch(cancer_rows(300, 400))},
        spec=_edit("features: {}", "features: {f0: {type: categorical}}"),
    ),
    "spec-entity-changed": Case(
        ["data", "ingest", "later.csv"],
        ["entity", "'f1'", "--new-schema"],
        files={"later.csv": _batch(cancer_rows(300, 400))},
        spec=_edit("entity: id", "entity: f1"),
    ),
    "spec-nothing-to-train-on": Case(
        ["train"],
        ["No column to train on", "'f0'"],
        spec=_edit(
            "features: {}",
            "features: {f0: {exclude: true}, f1: {exclude: true}, f2: {exclude: true}, "
            "f3: {exclude: true}}",
        ),
    ),
    "spec-wrong-delimiter": Case(
        ["data", "ingest", "--new-schema"],
        ["target", "delimiter"],
        spec=_edit("{path: cancer.csv}", "{path: cancer.csv, delimiter: ';'}"),
    ),
    # Settings.
    "env-db-url": Case(
        ["data", "list"], ["SETPOINT_DB_URL", "'garbage'"], env={"SETPOINT_DB_URL": "garbage"}
    ),
    "env-db-url-mysql": Case(
        ["model", "list"],
        ["SETPOINT_DB_URL", "mysql://ann:***@"],
        env={"SETPOINT_DB_URL": "mysql://ann:pw@db/x"},
    ),
    "env-busy-timeout": Case(
        ["data", "list"],
        ["SETPOINT_SQLITE_BUSY_TIMEOUT_MS", "'abc'"],
        env={"SETPOINT_SQLITE_BUSY_TIMEOUT_MS": "abc"},
    ),
    "env-home-is-a-file": Case(
        ["data", "list"], ["SETPOINT_HOME", "cancer.csv"], env={"SETPOINT_HOME": "cancer.csv/home"}
    ),
    # Flags and the model registry.
    "promote-missing": Case(["model", "promote", "99"], ["cancer@99", "setpoint model list"]),
    "show-missing": Case(["model", "show", "99"], ["cancer@99"]),
    "rollback-no-history": Case(["model", "rollback", "--reason", "x"], ["Nothing to roll back"]),
    "train-missing-version": Case(["train", "--version", "9"], ["events@9", "1 to 1"]),
    "train-missing-dataset": Case(["train", "--dataset", "nope"], ["cancer/nope"]),
    "dir-missing": Case(["model", "list", "--dir", "nowhere"], ["nowhere", "setpoint init"]),
    "dir-is-a-file": Case(["data", "list", "--dir", "cancer.csv"], ["--dir", "is a file"]),
    "version-not-a-number": Case(["model", "show", "two"], ["'version'", "integer"]),
    "export-suffix": Case(["data", "quarantine", "--export", "rows.txt"], ["--export", "rows.txt"]),
    "export-unwritable": Case(
        ["data", "quarantine", "--export", "cancer.csv/q.csv"], ["cancer.csv/q.csv"]
    ),
    "init-again": Case(["init", "--project", "x", "--target", "y"], ["setpoint.yaml", "--force"]),
}


@pytest.mark.parametrize("case", CLI_CASES.values(), ids=CLI_CASES.keys())
def test_cli_refuses_bad_input_and_keeps_the_store(project: Path, case: Case) -> None:
    (project / "folder.csv").mkdir()
    if case.spec is not None:
        spec = project / "setpoint.yaml"
        spec.write_text(case.spec(spec.read_text()))
    before = snapshot(project)
    for name, data in case.files.items():
        (project / name).write_bytes(data if isinstance(data, bytes) else _batch(data))
    assert_user_error(run(*case.args, cwd=project, env=case.env), case.words)
    assert snapshot(project) == before


def test_refusals_leave_datasets_and_models_as_listed(project: Path) -> None:
    listed = [run(*args, cwd=project).stdout for args in (["data", "list"], ["model", "list"])]
    (project / "bad.csv").write_bytes(BATCH_CASES["mixed.csv"][0])
    assert_user_error(run("data", "ingest", "bad.csv", cwd=project), ["refused"])
    assert_user_error(run("model", "promote", "5", cwd=project), ["cancer@5"])
    after = [run(*args, cwd=project).stdout for args in (["data", "list"], ["model", "list"])]
    assert after == listed
    assert "ingest_refused" in run("events", cwd=project).stdout


FIRST_BATCH_CASES: dict[str, tuple[list[str], list[str], bytes]] = {
    "target": (["--target", "label"], ["target names 'label'", "data.csv"], GOOD.encode()),
    "timestamp": (
        ["--target", "diagnosis", "--timestamp", "when"],
        ["timestamp names 'when'"],
        GOOD.encode(),
    ),
    "entity": (
        ["--target", "diagnosis", "--entity", "ID"],
        ["entity names 'ID'", "'id'"],
        GOOD.encode(),
    ),
    "one-class": (
        ["--target", "diagnosis"],
        ["'diagnosis'", "one value only", "'yes'"],
        _batch(later(y=set_column("diagnosis", lambda i: "yes"))),
    ),
    "timestamp-format": (
        ["--target", "diagnosis", "--timestamp", "seen_at"],
        ["'seen_at'", "ISO 8601", "data.csv"],
        _batch(later(t=set_column("seen_at", lambda i: f"{1 + i % 28:02d}/01/2024 10:00"))),
    ),
    "target-nulls": (
        ["--target", "diagnosis"],
        ["refused", "missing_target", "'diagnosis'"],
        _batch(later(y=set_column("diagnosis", lambda i: ["", "yes", "no"][i % 3]))),
    ),
}


@pytest.mark.parametrize(
    ("init", "words", "data"), FIRST_BATCH_CASES.values(), ids=FIRST_BATCH_CASES.keys()
)
def test_first_batch_that_contradicts_the_spec_stores_nothing(
    tmp_path: Path, init: list[str], words: list[str], data: bytes
) -> None:
    (tmp_path / "data.csv").write_bytes(data)
    assert (
        run("init", "--project", "fresh", *init, "--source", "data.csv", cwd=tmp_path).returncode
        == 0
    )
    assert_user_error(run("data", "ingest", cwd=tmp_path), words)
    db = tmp_path / ".setpoint" / "setpoint.db"
    if db.exists():
        with sqlite3.connect(db) as conn:
            for table in ("datasets", "schemas", "quarantine"):
                assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--project", "bad name!", "--target", "y"], ["--project 'bad name!'"]),
        (
            ["--project", "p", "--target", "y", "--task", "ranking"],
            ["--task 'ranking'", "multiclass"],
        ),
    ],
)
def test_init_names_the_option_at_fault_and_writes_nothing(
    tmp_path: Path, args: list[str], words: list[str]
) -> None:
    assert_user_error(run("init", *args, "--dir", "new", cwd=tmp_path), words)
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("name", [*FILE_CASES, *BATCH_CASES])
def test_python_api_refuses_the_same_files(project: Path, name: str) -> None:
    data, words = {**FILE_CASES, **BATCH_CASES}[name]
    (project / name).write_bytes(data)
    before = snapshot(project)
    with pytest.raises(SetpointError) as info:
        Project.open(project).ingest(project / name)
    for word in words:
        assert word in str(info.value)
    assert snapshot(project) == before


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ([{"a": 1}] * 100, ["'f0'", "dict"]),
        ([[1, 2]] * 100, ["'f0'", "list"]),
        (np.ones(100) * 1j, ["'f0'", "complex"]),
    ],
    ids=["dicts", "lists", "complex"],
)
def test_python_api_refuses_cells_no_column_can_hold(
    project: Path, values: object, words: list[str]
) -> None:
    frame = pd.DataFrame(cancer_rows(300, 400), columns=HEADER).assign(f0=values)
    before = snapshot(project)
    with pytest.raises(SchemaError) as info:
        Project.open(project).ingest(frame)
    for word in words:
        assert word in str(info.value)
    assert snapshot(project) == before


def test_python_api_refuses_bad_arguments(project: Path) -> None:
    api = Project.open(project)
    before = snapshot(project)
    with pytest.raises(InvalidParameterError, match="source"):
        api.ingest(42)
    with pytest.raises(InvalidParameterError, match="version"):
        api.promote("1")  # type: ignore[arg-type]
    with pytest.raises(NotFoundError, match="events@0"):
        api.train(version=0)
    with pytest.raises(NotFoundError, match="cancer@7"):
        api.promote(7)
    with pytest.raises(SetpointError, match="Nothing to roll back"):
        api.rollback(reason="none")
    assert snapshot(project) == before


# Bad input that reaches model fitting. These fail while train/ lets a library's
# exception through (see the report): the user gets a traceback, not a message.
TRAIN_CASES: dict[str, tuple[Callable[[str], str], bytes | None, list[str]]] = {
    "lightgbm-param-type": (
        _edit("family: linear", 'family: lightgbm\n  params: {learning_rate: "fast"}'),
        None,
        ["learning_rate"],
    ),
    "linear-param-value": (
        _edit("family: linear", "family: linear\n  params: {C: -1}"),
        None,
        ["C"],
    ),
    "linear-huge-feature": (
        lambda text: text,
        _batch(later(f0=set_column("f0", lambda i: "1e308" if i % 2 else "-1e308"))),
        ["'f0'"],
    ),
}


@pytest.mark.parametrize(("spec", "data", "words"), TRAIN_CASES.values(), ids=TRAIN_CASES.keys())
def test_training_on_bad_recipes_or_values_is_a_user_error(
    tmp_path: Path, spec: Callable[[str], str], data: bytes | None, words: list[str]
) -> None:
    (tmp_path / "data.csv").write_bytes(data or GOOD.encode())
    init = ["--project", "p", "--target", "diagnosis", "--entity", "id", "--source", "data.csv"]
    assert run("init", *init, cwd=tmp_path).returncode == 0
    path = tmp_path / "setpoint.yaml"
    text = path.read_text().replace("family: lightgbm", "family: linear")
    path.write_text(spec(text.replace("bootstrap: 1000", "bootstrap: 200")))
    assert run("data", "ingest", cwd=tmp_path).returncode == 0
    assert_user_error(run("train", cwd=tmp_path), words)
    with sqlite3.connect(tmp_path / ".setpoint" / "setpoint.db") as conn:
        assert conn.execute("SELECT count(*) FROM model_versions").fetchone() == (0,)
