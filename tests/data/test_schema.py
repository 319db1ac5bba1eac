"""infer_schema and the Schema model."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from setpoint.config.spec import ProjectSpec
from setpoint.data.schema import ColumnSchema, Schema, infer_schema
from setpoint.errors import InvalidParameterError, SchemaError

MakeSpec = Callable[..., ProjectSpec]


@pytest.fixture
def frame() -> pd.DataFrame:
    n = 100
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "amount": rng.uniform(5, 50, n),
            "count": rng.integers(0, 10, n),
            "city": pd.Series(rng.choice(["Oslo", "Paris", "Rome"], n), dtype="str"),
            "comment": pd.Series([f"free text {i}" for i in range(n)], dtype="str"),
            "flag": rng.integers(0, 2, n).astype(bool),
            "when": pd.Series(pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"))
            .dt.strftime("%Y-%m-%dT%H:%M:%SZ")
            .astype("str"),
            "y": rng.normal(size=n),
        }
    )


def test_kinds_ranges_and_roles(frame: pd.DataFrame, make_spec: MakeSpec) -> None:
    schema = infer_schema(frame, spec=make_spec(entity="id", timestamp="when"))
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds == {
        "id": "numeric",
        "amount": "numeric",
        "count": "numeric",
        "city": "categorical",
        "comment": "text",
        "flag": "boolean",
        "when": "datetime",
        "y": "numeric",
    }
    assert schema.column("city").categories == ("Oslo", "Paris", "Rome")
    amount = schema.column("amount")
    assert amount.min == frame["amount"].min()
    assert amount.max == frame["amount"].max()
    assert amount.dtype == "float64"
    assert schema.column("count").dtype == "int64"
    assert schema.column("flag").dtype == "bool"
    assert schema.column("when").dtype == "datetime64[us, UTC]"
    entity = schema.column("id")
    assert entity.unique
    assert (entity.min, entity.max) == (None, None)
    assert schema.feature_columns == ["amount", "count", "city", "comment", "flag"]
    assert schema.numeric_columns == ["amount", "count"]
    assert schema.categorical_columns == ["city"]
    assert (schema.target, schema.timestamp, schema.entity, schema.version) == (
        "y",
        "when",
        "id",
        1,
    )


def test_text_entity_is_never_categorical(make_spec: MakeSpec) -> None:
    df = pd.DataFrame({"key": ["a", "b", "c"], "y": [1.0, 2.0, 3.0]})
    assert infer_schema(df, spec=make_spec(entity="key")).column("key").kind == "text"
    assert infer_schema(df, spec=make_spec()).column("key").kind == "categorical"


def test_max_categories_turns_many_values_into_text(make_spec: MakeSpec) -> None:
    df = pd.DataFrame({"c": [f"v{i % 30}" for i in range(300)], "y": 0.0})
    assert infer_schema(df, spec=make_spec()).column("c").kind == "categorical"
    spec = make_spec(validation={"max_categories": 10})
    assert infer_schema(df, spec=spec).column("c").kind == "text"


def test_mostly_numbers_with_a_stray_string_is_numeric(make_spec: MakeSpec) -> None:
    values = [str(i) for i in range(99)] + ["abc"]
    schema = infer_schema(pd.DataFrame({"x": values, "y": 0.0}), spec=make_spec())
    col = schema.column("x")
    assert (col.kind, col.min, col.max) == ("numeric", 0.0, 98.0)


def test_overrides(frame: pd.DataFrame, make_spec: MakeSpec) -> None:
    spec = make_spec(
        features={
            "count": {"type": "categorical"},
            "amount": {"min": 0, "nullable": True},
            "city": {"categories": ["Rome", "Oslo", "Bergen"]},
            "comment": {"exclude": True},
            "flag": {"nullable": True},
        }
    )
    schema = infer_schema(frame, spec=spec)
    assert schema.column("count").kind == "categorical"
    assert schema.column("count").categories == tuple(sorted({str(v) for v in frame["count"]}))
    amount = schema.column("amount")
    assert (amount.min, amount.max, amount.nullable) == (0.0, frame["amount"].max(), True)
    assert schema.column("city").categories == ("Bergen", "Oslo", "Rome")
    assert schema.column("flag").dtype == "boolean"
    assert "comment" not in schema.feature_columns
    assert schema.excluded == ("comment",)


def test_nullable_override_on_integers_widens_the_dtype(make_spec: MakeSpec) -> None:
    df = pd.DataFrame({"n": [1, 2, 3], "y": 0.0})
    schema = infer_schema(df, spec=make_spec(features={"n": {"nullable": True}}))
    assert schema.column("n").dtype == "float64"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"min": 0}, r"features\.city: 'min' and 'max' apply to numeric columns"),
        ({"type": "text", "categories": ["a"]}, r"features\.city: 'categories' apply"),
    ],
)
def test_overrides_that_do_not_fit_the_kind(
    frame: pd.DataFrame, make_spec: MakeSpec, override: dict[str, object], message: str
) -> None:
    with pytest.raises(SchemaError, match=message):
        infer_schema(frame, spec=make_spec(features={"city": override}))


@pytest.mark.parametrize(
    ("fields", "key", "column", "hint"),
    [
        ({"target": "yy"}, "target", "yy", "'y'"),
        ({"timestamp": "whn"}, "timestamp", "whn", "'when'"),
        ({"entity": "ID"}, "entity", "ID", "'id'"),
        ({"features": {"amont": {}}}, "features.amont", "amont", "'amount'"),
        ({"segments": ["city", "cty"]}, "segments[1]", "cty", "'city'"),
    ],
)
def test_spec_naming_a_missing_column(
    frame: pd.DataFrame,
    make_spec: MakeSpec,
    fields: dict[str, object],
    key: str,
    column: str,
    hint: str,
) -> None:
    with pytest.raises(SchemaError) as info:
        infer_schema(frame, spec=make_spec(**fields))
    message = str(info.value)
    assert f"{key} names {column!r} (did you mean {hint}" in message
    assert info.value.column == column
    assert info.value.context["key"] == key


def test_all_null_columns_are_inferred_and_flagged(make_spec: MakeSpec) -> None:
    df = pd.DataFrame({"a": [np.nan] * 3, "b": [None] * 3, "y": [1.0, 2.0, 3.0]})
    schema = infer_schema(df, spec=make_spec())
    a, b = schema.column("a"), schema.column("b")
    assert (a.kind, a.null_rate, a.nullable, a.min, a.max) == ("numeric", 1.0, True, None, None)
    assert (b.kind, b.null_rate) == ("text", 1.0)
    assert len(schema.notes) == 2
    assert "'a' is entirely null" in schema.notes[0]


def test_huge_numbers_nan_and_inf_do_not_crash(make_spec: MakeSpec) -> None:
    df = pd.DataFrame(
        {
            "x": [1e308, -1e308, np.nan, np.inf, -np.inf],
            "only_inf": [np.inf] * 5,
            "big_int": [2**62, -(2**62), 0, 1, 2],
            "y": 1.0,
        }
    )
    schema = infer_schema(df, spec=make_spec())
    x = schema.column("x")
    assert (x.min, x.max, x.nullable) == (-1e308, 1e308, True)
    assert schema.column("only_inf").min is None
    assert schema.column("big_int").max == float(2**62)
    text = json.dumps(schema.to_dict(), allow_nan=False)
    assert Schema.from_dict(json.loads(text)) == schema


def test_json_roundtrip(frame: pd.DataFrame, make_spec: MakeSpec) -> None:
    schema = infer_schema(frame, spec=make_spec(entity="id", timestamp="when"), version=3)
    data = json.loads(json.dumps(schema.to_dict()))
    assert data["version"] == 3
    assert data["columns"][3]["categories"] == ["Oslo", "Paris", "Rome"]
    assert Schema.from_dict(data) == schema


def test_from_dict_rejects_a_bad_schema() -> None:
    with pytest.raises(
        SchemaError, match="stored schema is invalid: schema: target 'y' is not one of the columns"
    ):
        Schema.from_dict({"columns": [], "target": "y"})
    bad_column = {"columns": [{"name": "n", "kind": "numeric", "dtype": "int64", "nullable": True}]}
    with pytest.raises(SchemaError, match="nullable, so its dtype must be 'float64'"):
        Schema.from_dict(bad_column)


def test_bounds_must_be_finite() -> None:
    with pytest.raises(ValueError, match="finite"):
        ColumnSchema(name="x", kind="numeric", dtype="float64", nullable=False, max=float("inf"))


def test_column_lookup_suggests(frame: pd.DataFrame, make_spec: MakeSpec) -> None:
    schema = infer_schema(frame, spec=make_spec())
    with pytest.raises(SchemaError, match=r"no column 'cit' \(did you mean 'city'\?\)"):
        schema.column("cit")


def test_unparseable_timestamp_column(make_spec: MakeSpec) -> None:
    df = pd.DataFrame({"t": ["yesterday", "today", "now", "2024-01-01"], "y": 1.0})
    with pytest.raises(
        SchemaError, match=r"'t' is not ISO 8601 date-time text, e\.g\. 'yesterday'"
    ):
        infer_schema(df, spec=make_spec(timestamp="t"))
    numbers = pd.DataFrame({"t": [1, 2, 3], "y": 1.0})
    with pytest.raises(SchemaError, match="holds int64 values, not date-times"):
        infer_schema(numbers, spec=make_spec(timestamp="t"))


def test_naive_timestamps_stay_naive(make_spec: MakeSpec) -> None:
    df = pd.DataFrame({"t": ["2024-01-01 10:00", "2024-01-02 11:30"], "y": 1.0})
    assert infer_schema(df, spec=make_spec(timestamp="t")).column("t").dtype == "datetime64[us]"


def test_bad_arguments(frame: pd.DataFrame, make_spec: MakeSpec) -> None:
    with pytest.raises(InvalidParameterError, match="The 'version' parameter of infer_schema"):
        infer_schema(frame, spec=make_spec(), version=0)
    with pytest.raises(InvalidParameterError, match="The 'df' parameter of infer_schema"):
        infer_schema([1, 2], spec=make_spec())
