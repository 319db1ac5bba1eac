"""validate_batch: one test per anomaly kind, plus the shape of the report."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from setpoint.config.spec import ValidationPolicy
from setpoint.data.schema import ColumnSchema, Schema
from setpoint.data.validate import AnomalyKind, ValidationReport, validate_batch
from setpoint.errors import BatchRefusedError, InvalidParameterError, SchemaError

SCHEMA = Schema(
    columns=(
        ColumnSchema(name="id", kind="numeric", dtype="int64", nullable=False, unique=True),
        ColumnSchema(
            name="x", kind="numeric", dtype="float64", nullable=True, null_rate=0.1, min=0, max=10
        ),
        ColumnSchema(name="n", kind="numeric", dtype="int64", nullable=False, min=0, max=100),
        ColumnSchema(
            name="c", kind="categorical", dtype="str", nullable=True, categories=("a", "b")
        ),
        ColumnSchema(name="flag", kind="boolean", dtype="bool", nullable=False),
        ColumnSchema(name="t", kind="datetime", dtype="datetime64[us, UTC]", nullable=False),
        ColumnSchema(name="note", kind="text", dtype="str", nullable=True),
        ColumnSchema(name="y", kind="numeric", dtype="float64", nullable=False),
    ),
    target="y",
    timestamp="t",
    entity="id",
)
LENIENT = ValidationPolicy(max_bad_share=1.0, null_rate_jump=1.0)


def good_rows(n: int = 4) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "x": np.linspace(0, 10, n),
            "n": np.arange(n) * 10,
            "c": pd.Series(["a", "b"] * (n // 2) + ["a"] * (n % 2), dtype="str"),
            "flag": [True, False] * (n // 2) + [True] * (n % 2),
            "t": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
            "note": pd.Series([f"n{i}" for i in range(n)], dtype="str"),
            "y": np.arange(n, dtype=float),
        }
    )


def with_value(column: str, row: int, value: Any, n: int = 4) -> pd.DataFrame:
    df = good_rows(n)
    df[column] = df[column].astype(object)
    df.loc[row, column] = value
    return df


def only_anomaly(report: ValidationReport) -> tuple[AnomalyKind, str | None, str]:
    assert report.n_bad == 1, report.summary()
    (anomaly,) = report.reasons[0]
    return anomaly.kind, anomaly.column, anomaly.detail


def test_good_batch_is_clean_and_typed() -> None:
    df = good_rows().astype({"flag": object}).assign(extra=1)[::-1]
    report = validate_batch(df.drop(columns="extra"), SCHEMA, policy=ValidationPolicy())
    assert (report.n_rows, report.n_bad, report.bad_share, report.refused) == (4, 0, 0.0, False)
    assert list(report.clean.columns) == SCHEMA.names
    assert report.clean.index.tolist() == [3, 2, 1, 0]
    dtypes = {c: str(t) for c, t in report.clean.dtypes.items()}
    assert dtypes == {
        "id": "int64",
        "x": "float64",
        "n": "int64",
        "c": "str",
        "flag": "bool",
        "t": "datetime64[us, UTC]",
        "note": "str",
        "y": "float64",
    }
    assert sum(report.counts.values()) == 0
    assert set(report.counts) == {k.value for k in AnomalyKind}


def test_text_values_are_converted() -> None:
    df = good_rows().astype(str)
    report = validate_batch(df, SCHEMA, policy=ValidationPolicy())
    assert report.n_bad == 0, report.summary()
    pd.testing.assert_frame_equal(
        report.clean, validate_batch(good_rows(), SCHEMA, policy=LENIENT).clean
    )


def test_type_mismatch() -> None:
    report = validate_batch(with_value("x", 1, "abc"), SCHEMA, policy=LENIENT)
    assert only_anomaly(report) == (AnomalyKind.TYPE_MISMATCH, "x", "'abc' is not a number")
    assert report.bad["_row"].tolist() == [1]
    assert report.bad["x"].tolist() == ["abc"]
    assert len(report.clean) == 3


def test_non_whole_number_in_an_integer_column() -> None:
    report = validate_batch(with_value("n", 2, 2.5), SCHEMA, policy=LENIENT)
    assert only_anomaly(report) == (AnomalyKind.TYPE_MISMATCH, "n", "2.5 is not a 64-bit integer")


def test_boolean_spellings() -> None:
    df = good_rows().astype({"flag": object})
    df["flag"] = pd.Series(["yes", "False", 1, "maybe"], dtype=object)
    report = validate_batch(df, SCHEMA, policy=LENIENT)
    assert only_anomaly(report) == (AnomalyKind.TYPE_MISMATCH, "flag", "'maybe' is not a boolean")
    assert report.clean["flag"].tolist() == [True, False, True]


def test_whole_column_type_mismatch_is_also_a_batch_anomaly() -> None:
    df = good_rows()
    df["n"] = ["a", "b", "c", "4"]
    report = validate_batch(df, SCHEMA, policy=LENIENT)
    assert report.n_bad == 3
    (batch,) = report.batch_anomalies
    assert (batch.kind, batch.column) == (AnomalyKind.TYPE_MISMATCH, "n")
    assert "3 of 4 values do not convert to numeric (e.g. 'a')" in batch.detail
    assert report.counts["type_mismatch"] == 4


def test_out_of_range_with_slack() -> None:
    report = validate_batch(with_value("x", 0, 10.5), SCHEMA, policy=LENIENT)
    assert only_anomaly(report) == (AnomalyKind.OUT_OF_RANGE, "x", "10.5 is outside [0, 10]")
    slack = LENIENT.model_copy(update={"range_slack": 0.1})
    assert validate_batch(with_value("x", 0, 10.5), SCHEMA, policy=slack).n_bad == 0
    assert validate_batch(with_value("x", 0, -1.5), SCHEMA, policy=slack).n_bad == 1
    accept = LENIENT.model_copy(update={"out_of_range": "accept"})
    assert validate_batch(with_value("x", 0, 1e300), SCHEMA, policy=accept).n_bad == 0


def test_unseen_category() -> None:
    report = validate_batch(with_value("c", 3, "zzz"), SCHEMA, policy=LENIENT)
    assert only_anomaly(report) == (
        AnomalyKind.UNSEEN_CATEGORY,
        "c",
        "'zzz' is not one of {'a', 'b'}",
    )
    accept = LENIENT.model_copy(update={"unseen_category": "accept"})
    report = validate_batch(with_value("c", 3, "zzz"), SCHEMA, policy=accept)
    assert report.n_bad == 0
    assert report.clean["c"].tolist() == ["a", "b", "a", "zzz"]


@pytest.mark.parametrize("value", [np.inf, -np.inf, "inf"])
def test_non_finite(value: Any) -> None:
    report = validate_batch(with_value("x", 2, value), SCHEMA, policy=LENIENT)
    kind, column, detail = only_anomaly(report)
    assert (kind, column) == (AnomalyKind.NON_FINITE, "x")
    assert detail in ("inf is not finite", "-inf is not finite", "'inf' is not finite")


def test_nan_in_a_nullable_feature_is_fine() -> None:
    df = good_rows()
    df.loc[1, "x"] = np.nan
    df.loc[2, "c"] = None
    df.loc[3, "note"] = None
    report = validate_batch(df, SCHEMA, policy=LENIENT)
    assert report.n_bad == 0
    assert report.clean["x"].isna().tolist() == [False, True, False, False]


@pytest.mark.parametrize("blank", [None, np.nan, "", "NA", " null "])
def test_missing_target(blank: Any) -> None:
    report = validate_batch(with_value("y", 0, blank), SCHEMA, policy=LENIENT)
    assert only_anomaly(report) == (AnomalyKind.MISSING_TARGET, "y", "the target is missing")


def test_null_in_a_non_nullable_column() -> None:
    report = validate_batch(with_value("n", 0, None), SCHEMA, policy=LENIENT)
    assert only_anomaly(report) == (AnomalyKind.UNEXPECTED_NULL, "n", "missing, and not nullable")


def test_duplicate_id_keeps_the_first() -> None:
    df = good_rows(5)
    df.loc[3, "id"] = 1
    report = validate_batch(df, SCHEMA, policy=LENIENT)
    assert only_anomaly(report) == (AnomalyKind.DUPLICATE_ID, "id", "id 1 is in an earlier row")
    assert report.bad["_row"].tolist() == [3]
    assert report.clean["id"].tolist() == [0, 1, 2, 4]


def test_duplicate_id_keeps_the_first_good_row() -> None:
    df = good_rows(5).astype({"x": object})
    df.loc[3, "id"] = 1
    df.loc[1, "x"] = "bad"
    report = validate_batch(df, SCHEMA, policy=LENIENT)
    assert report.bad["_row"].tolist() == [1]
    assert report.clean["id"].tolist() == [0, 2, 1, 4]


def test_known_ids() -> None:
    report = validate_batch(good_rows(), SCHEMA, policy=LENIENT, known_ids={"2", 7})
    assert only_anomaly(report) == (AnomalyKind.DUPLICATE_ID, "id", "id 2 was already ingested")
    report = validate_batch(good_rows(), SCHEMA, policy=LENIENT, known_ids=np.array([0, 3]))
    assert report.bad["_row"].tolist() == [0, 3]


@pytest.mark.parametrize("value", ["not a time", "2024-13-45T00:00:00", 12345])
def test_unparseable_timestamp(value: Any) -> None:
    report = validate_batch(with_value("t", 1, value), SCHEMA, policy=LENIENT)
    kind, column, detail = only_anomaly(report)
    assert (kind, column) == (AnomalyKind.UNPARSEABLE_TIMESTAMP, "t")
    assert detail == f"{value!r} is not an ISO 8601 timestamp"


def test_timestamps_in_other_zones_are_converted() -> None:
    df = good_rows(2).astype({"t": object})
    df["t"] = ["2024-01-01T01:00:00+01:00", "2024-01-01T00:30:00"]
    report = validate_batch(df, SCHEMA, policy=LENIENT)
    assert report.n_bad == 0
    assert [str(t) for t in report.clean["t"]] == [
        "2024-01-01 00:00:00+00:00",
        "2024-01-01 00:30:00+00:00",
    ]


def test_null_rate_jump() -> None:
    df = good_rows(10)
    df.loc[:4, "x"] = np.nan
    report = validate_batch(df, SCHEMA, policy=ValidationPolicy(null_rate_jump=0.2))
    (anomaly,) = report.batch_anomalies
    assert (anomaly.kind, anomaly.column) == (AnomalyKind.NULL_RATE_JUMP, "x")
    assert anomaly.detail.startswith("null rate 0.500 vs 0.100")
    assert report.n_bad == 0
    assert not report.refused
    assert not validate_batch(
        df, SCHEMA, policy=ValidationPolicy(null_rate_jump=0.5)
    ).batch_anomalies


def test_missing_and_unexpected_columns() -> None:
    df = good_rows().drop(columns=["note"]).assign(extra=1)
    report = validate_batch(df, SCHEMA, policy=ValidationPolicy())
    kinds = [(a.kind, a.column) for a in report.batch_anomalies]
    assert kinds == [
        (AnomalyKind.MISSING_COLUMN, "note"),
        (AnomalyKind.UNEXPECTED_COLUMN, "extra"),
    ]
    assert not report.refused
    assert list(report.clean.columns) == SCHEMA.names
    assert report.clean["note"].isna().all()

    required = validate_batch(good_rows().drop(columns=["n"]), SCHEMA, policy=ValidationPolicy())
    assert required.refused
    assert required.refusal == "required columns are missing: ['n']"
    with pytest.raises(BatchRefusedError) as info:
        required.raise_if_refused()
    assert info.value.report is required


def test_refused_when_too_many_bad_rows() -> None:
    df = with_value("x", 0, "bad", n=10)
    assert not validate_batch(df, SCHEMA, policy=ValidationPolicy(max_bad_share=0.1)).refused
    report = validate_batch(df, SCHEMA, policy=ValidationPolicy(max_bad_share=0.05))
    assert report.refused
    assert report.refusal == "10.0% of the rows are bad, more than the allowed 5.0%"


def test_several_anomalies_in_one_row_and_report_output() -> None:
    df = good_rows(6).astype({"x": object, "c": object})
    df.loc[2, ["x", "c"]] = ["abc", "zzz"]
    df.loc[4, "y"] = None
    df.index = [f"r{i}" for i in range(6)]
    report = validate_batch(df, SCHEMA, policy=ValidationPolicy(null_rate_jump=0.5))
    assert report.bad["_row"].tolist() == ["r2", "r4"]
    assert [[a.kind for a in r] for r in report.reasons] == [
        [AnomalyKind.TYPE_MISMATCH, AnomalyKind.UNSEEN_CATEGORY],
        [AnomalyKind.MISSING_TARGET],
    ]
    assert report.clean.index.tolist() == ["r0", "r1", "r3", "r5"]
    summary = report.summary()
    assert summary.splitlines()[0] == "6 rows: 2 bad (33.3%), 4 clean; REFUSED: " + (
        "33.3% of the rows are bad, more than the allowed 5.0%."
    )
    assert (
        "type_mismatch 1 (in 'x'), unseen_category 1 (in 'c'), missing_target 1 (in 'y')" in summary
    )
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["examples"][0]["row"] == "r2"
    assert data["examples"][1]["anomalies"] == [
        {"kind": "missing_target", "column": "y", "detail": "the target is missing"}
    ]


def test_empty_batch() -> None:
    report = validate_batch(good_rows().iloc[:0], SCHEMA, policy=ValidationPolicy())
    assert (report.n_rows, report.n_bad, report.bad_share, report.refused) == (0, 0, 0.0, False)
    assert list(report.clean.columns) == SCHEMA.names


def test_duplicate_batch_columns_and_bad_arguments() -> None:
    df = pd.concat([good_rows(), good_rows()[["x"]]], axis=1)
    with pytest.raises(SchemaError, match=r"duplicate column names: \['x'\]"):
        validate_batch(df, SCHEMA, policy=LENIENT)
    with pytest.raises(InvalidParameterError) as info:
        validate_batch(good_rows(), SCHEMA, policy={"max_bad_share": 0.1})
    assert str(info.value) == (
        "The 'policy' parameter of validate_batch must be a ValidationPolicy. Got 'dict' instead."
    )
