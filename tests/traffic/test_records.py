"""Reading records and planning a replay, from Python: Parquet, CSV, JSON and JSONL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from setpoint.config.spec import ProjectSpec
from setpoint.errors import DataError, InvalidParameterError, SchemaError, SourceError
from setpoint.traffic.records import (
    ReplayColumns,
    ReplayPlan,
    parse_records,
    plan_replay,
    read_records,
)

T0 = datetime(2024, 3, 1, tzinfo=UTC)
COLUMNS = ReplayColumns(time="at", label="outcome", entity="id")


def events() -> pd.DataFrame:
    """8 events, 3 hours apart, out of time order; one has no time, one no outcome."""
    order = [5, 2, 7, 0, 3, 6, 1, 4]
    return pd.DataFrame(
        {
            "id": [f"e{i}" for i in order],
            "at": [None if i == 6 else T0 + timedelta(hours=3 * i) for i in order],
            "x": [float("nan") if i == 3 else i * 1.5 for i in order],
            "outcome": [None if i == 7 else i % 2 for i in order],
        }
    ).astype({"outcome": "Int64", "at": "datetime64[us, UTC]"})


def write(frame: pd.DataFrame, path: Path) -> Path:
    """``frame`` as a file of the suffix of ``path``, times as ISO text in text formats."""
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
        return path
    rows = [
        {
            k: (v.isoformat() if isinstance(v, pd.Timestamp) else None if pd.isna(v) else v)
            for k, v in row.items()
        }
        for row in frame.astype(object).to_dict("records")
    ]
    if path.suffix == ".csv":
        pd.DataFrame(rows).to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        path.write_text(json.dumps({"records": rows}))
    return path


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl", ".json"])
def test_a_plan_is_the_window_in_time_order_without_the_outcome(
    tmp_path: Path, suffix: str
) -> None:
    path = write(events(), tmp_path / f"events{suffix}")
    plan = plan_replay(path, columns=COLUMNS, start=T0 + timedelta(hours=3), limit=4)
    assert [r["id"] for r in plan.records] == ["e1", "e2", "e3", "e4"]
    assert plan.times == [T0 + timedelta(hours=3 * i) for i in (1, 2, 3, 4)]
    assert (plan.first, plan.last) == (plan.times[0], plan.times[-1])
    assert plan.records[0]["at"] == "2024-03-01T03:00:00+00:00"
    assert all(set(r) == {"id", "at", "x"} for r in plan.records)
    assert plan.records[2]["x"] is None  # NaN and null are sent as null
    assert plan.records[3]["x"] == 6.0
    # a 0/1 column is a binary outcome, sent as JSON true and false
    assert plan.labels == [True, False, True, False]
    assert all(type(label) is bool for label in plan.labels)
    assert plan.source == str(path)
    assert plan.notes == (f"{path}: 1 record(s) with no at are not sent.",)


def test_an_end_is_exclusive_and_a_missing_outcome_is_none(tmp_path: Path) -> None:
    path = write(events(), tmp_path / "events.csv")
    plan = plan_replay(
        path, columns=COLUMNS, start=T0 + timedelta(hours=12), end=T0 + timedelta(hours=21)
    )
    assert [r["id"] for r in plan.records] == ["e4", "e5"]  # e6 has no time, e7 is at +21h
    plan = plan_replay(path, columns=COLUMNS, start=T0 + timedelta(hours=21))
    assert plan.labels == [None]


def test_naive_times_are_utc_and_ties_keep_the_file_order() -> None:
    rows = [
        {"at": "2024-03-01T02:00:00", "n": 0},
        {"at": "2024-03-01T01:00:00-01:00", "n": 1},  # 02:00 UTC too
        {"at": "2024-03-01T01:00:00Z", "n": 2},
    ]
    plan = plan_replay(rows, columns=ReplayColumns(time="at"))
    assert [r["n"] for r in plan.records] == [2, 0, 1]
    assert plan.times[1] == plan.times[2] == datetime(2024, 3, 1, 2, tzinfo=UTC)
    assert plan.labels is None
    naive = plan_replay(rows, columns=ReplayColumns(time="at"), end=datetime(2024, 3, 1, 2))
    assert [r["n"] for r in naive.records] == [2]


def test_a_frame_plans_too_and_keeps_labels_that_are_not_binary() -> None:
    frame = events().astype({"outcome": "float64"})
    frame.loc[frame.id == "e1", "outcome"] = 2.5
    plan = plan_replay(frame, columns=COLUMNS, limit=3)
    assert plan.source == "the frame"
    assert plan.labels == [0.0, 2.5, 0.0]


def test_without_the_label_column_there_is_no_feedback(tmp_path: Path) -> None:
    path = write(events().drop(columns=["outcome"]), tmp_path / "events.parquet")
    plan = plan_replay(path, columns=COLUMNS)
    assert plan.labels is None
    assert f"{path} has no 'outcome' column: no feedback will be posted." in plan.notes


@pytest.mark.parametrize(
    ("columns", "error", "words"),
    [
        (ReplayColumns(time="when"), SchemaError, ["no 'when' column", "time", "id, at, x"]),
        (ReplayColumns(time="at", entity="key"), SchemaError, ["no 'key' column", "entity"]),
        (ReplayColumns(time="x"), SchemaError, ["record 0", "x = 7.5", "ISO 8601"]),
        (ReplayColumns(time="id"), SchemaError, ["record 0", "'e5'", "8 records"]),
    ],
)
def test_columns_that_are_not_there_or_not_times_are_named(
    tmp_path: Path, columns: ReplayColumns, error: type[Exception], words: list[str]
) -> None:
    path = write(events(), tmp_path / "events.csv")
    with pytest.raises(error) as caught:
        plan_replay(path, columns=columns)
    for word in words:
        assert word in str(caught.value)
    assert str(path) in str(caught.value)


def test_an_empty_window_says_where_the_times_are(tmp_path: Path) -> None:
    path = write(events(), tmp_path / "events.parquet")
    with pytest.raises(DataError, match=r"no records .* at in \[2025-01-01T00:00:00\+00:00, the "):
        plan_replay(path, columns=COLUMNS, start=datetime(2025, 1, 1))
    with pytest.raises(DataError, match="runs from 2024-03-01T00:00:00"):
        plan_replay(path, columns=COLUMNS, start=datetime(2025, 1, 1))


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("a.txt", "{}", ["a.txt", "expected a file ending in .json, .jsonl, .csv, .parquet"]),
        ("a.jsonl", '{"a": 1}\n[1]\n', ["a.jsonl", "line 2 is not a JSON object"]),
        ("a.jsonl", '{"a": 1}\n{oops\n', ["a.jsonl:2", "not valid JSON"]),
        ("a.jsonl", "\n\n", ["a.jsonl", "no records"]),
        ("a.json", '"text"', ["a.json", "got a str"]),
        ("a.parquet", "PAR1 not really", ["a.parquet", "cannot be read"]),
        ("a.csv", "", ["a.csv", "cannot be read"]),
    ],
)
def test_bad_files_are_named(tmp_path: Path, name: str, text: str, words: list[str]) -> None:
    (tmp_path / name).write_text(text)
    for read in (read_records, lambda p: plan_replay(p, columns=COLUMNS)):
        with pytest.raises(SourceError) as caught:
            read(tmp_path / name)
        assert "\n" not in str(caught.value)  # one line, for the command line's error
        for word in words:
            assert word in str(caught.value)
    with pytest.raises(SourceError, match="no such file"):
        read_records(tmp_path / "missing.csv")


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_read_records_gives_json_ready_rows(tmp_path: Path, suffix: str) -> None:
    path = write(events(), tmp_path / f"events{suffix}")
    rows = read_records(path)
    assert [r["id"] for r in rows] == events().id.tolist()
    assert rows[0] == {"id": "e5", "at": "2024-03-01T15:00:00+00:00", "x": 7.5, "outcome": 1}
    assert json.loads(json.dumps(rows)) == rows  # no NaN, no Timestamp


def test_parse_records_names_its_source() -> None:
    assert parse_records('{"records": [{"a": 1}, {"a": null}]}') == [{"a": 1}, {"a": None}]
    with pytest.raises(SourceError, match=r"^--json: not valid JSON"):
        parse_records("{oops", source="--json")


def spec(**fields: Any) -> ProjectSpec:
    return ProjectSpec.model_validate({"project": "p", "task": "binary", "target": "y", **fields})


def test_columns_come_from_the_spec_unless_named() -> None:
    full = spec(timestamp="at", entity="id")
    assert ReplayColumns.from_spec(full) == ReplayColumns(time="at", label="y", entity="id")
    assert ReplayColumns.from_spec(full, time="t", label="z") == ReplayColumns(
        time="t", label="z", entity="id"
    )
    assert ReplayColumns.from_spec(spec(), time="at") == ReplayColumns(time="at", label="y")
    with pytest.raises(SchemaError, match="names no 'timestamp'"):
        ReplayColumns.from_spec(spec())


def test_bad_columns_and_plans_are_refused() -> None:
    with pytest.raises(InvalidParameterError, match="'label'"):
        ReplayColumns(time="at", label="at")
    with pytest.raises(InvalidParameterError, match="'time'"):
        ReplayColumns(time="")
    with pytest.raises(InvalidParameterError, match="in time order"):
        ReplayPlan(records=[{}, {}], times=[T0, T0 - timedelta(1)], labels=None)
    with pytest.raises(InvalidParameterError, match="one per record"):
        ReplayPlan(records=[{}], times=[T0], labels=[1, 2])
    with pytest.raises(InvalidParameterError, match="'limit'"):
        plan_replay([{"at": "2024-01-01"}], columns=ReplayColumns(time="at"), limit=0)
