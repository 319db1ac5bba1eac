from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from setpoint.errors import InvalidParameterError, SchemaError, TrainingError
from setpoint.train.preprocess import Preprocessor, category_key

from .conftest import CATEGORICAL, NUMERIC


def test_codes_follow_frequency_and_pool_rare_unseen_and_missing() -> None:
    frame = pd.DataFrame(
        {
            "x": [1.0, 2.0, np.nan, 4.0, 5.0, 6.0],
            "c": ["b", "b", "b", "a", "a", "rare"],
        }
    )
    pre = Preprocessor(["x"], ["c"], min_category_count=2).fit(frame)
    assert pre.categories_ == {"c": ["b", "a"]}
    assert pre.medians_ == {"x": 4.0}
    out = pre.transform({"x": [np.nan, 3.0, 1.0, 2.0], "c": ["a", "rare", "never seen", None]})
    # kept: b=0, a=1; other (rare or unseen) = 2; missing = 3; numeric NaN stays NaN.
    assert out[:, 1].tolist() == [1.0, 2.0, 2.0, 3.0]
    assert np.isnan(out[0, 0])
    assert out[1:, 0].tolist() == [3.0, 1.0, 2.0]
    assert pre.categorical_indices == [1]


def test_ties_in_frequency_are_ordered_by_name_not_row_order() -> None:
    one = Preprocessor([], ["c"], min_category_count=1).fit({"c": ["y", "x", "y", "x"]})
    two = Preprocessor([], ["c"], min_category_count=1).fit({"c": ["x", "y", "x", "y"]})
    assert one.categories_ == two.categories_ == {"c": ["x", "y"]}


def test_max_categories_caps_the_kept_list() -> None:
    pre = Preprocessor([], ["c"], min_category_count=1, max_categories=2)
    pre.fit({"c": list("aaabbc")})
    assert pre.categories_["c"] == ["a", "b"]
    assert pre.transform({"c": ["c"]}).tolist() == [[2.0]]


def test_category_keys_agree_between_pandas_floats_and_json_ints() -> None:
    # An integer column with a gap becomes float64 in pandas; a request sends ints.
    frame = pd.DataFrame({"code": [1, 2, 2, None, 1, 1]})
    pre = Preprocessor([], ["code"], min_category_count=1).fit(frame)
    assert pre.categories_["code"] == ["1", "2"]
    assert pre.transform({"code": [1, 2, 1.0, True]}).ravel().tolist() == [0.0, 1.0, 0.0, 2.0]
    assert category_key(pd.NA) is None
    assert category_key(pd.NaT) is None
    assert category_key(np.float32(2.5)) == "2.5"


def test_nullable_and_categorical_pandas_dtypes() -> None:
    frame = pd.DataFrame(
        {
            "n": pd.array([1, None, 3, 5], dtype="Int64"),
            "s": pd.array(["a", None, "a", "b"], dtype="string"),
            "k": pd.Categorical(["u", "v", "u", None]),
        }
    )
    pre = Preprocessor(["n"], ["s", "k"], min_category_count=1).fit(frame)
    out = pre.transform(frame)
    assert out.dtype == np.float64
    assert np.isnan(out[1, 0])
    assert pre.medians_["n"] == 3.0
    assert out[:, 1].tolist() == [0.0, 3.0, 0.0, 1.0]  # a, missing, a, b
    assert out[:, 2].tolist() == [0.0, 1.0, 0.0, 3.0]  # u, v, u, missing


def test_linear_mode_imputes_one_hot_encodes_and_standardises(flights: pd.DataFrame) -> None:
    pre = Preprocessor(NUMERIC, CATEGORICAL, mode="linear", max_categories=20).fit(flights)
    out = pre.transform(flights)
    names = pre.feature_names_out()
    assert out.shape == (len(flights), len(names))
    assert names[:3] == NUMERIC
    assert "carrier=<other>" in names
    assert "dest=<missing>" in names
    assert not np.isnan(out).any()
    varying = out.std(axis=0) > 0
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(out.std(axis=0)[varying], 1.0, rtol=1e-9)
    assert pre.categorical_indices == []
    assert pre.source_columns().count("origin") == len(pre.categories_["origin"]) + 2


def test_linear_mode_imputes_missing_numerics_with_the_training_median() -> None:
    pre = Preprocessor(["x"], [], mode="linear").fit({"x": [1.0, 2.0, 9.0]})
    assert pre.transform({"x": [None]}) == pre.transform({"x": [2.0]})


def test_mapping_input_equals_dataframe_input(flights: pd.DataFrame) -> None:
    rows = flights.head(500)
    for mode in ("tree", "linear"):
        pre = Preprocessor(NUMERIC, CATEGORICAL, mode=mode).fit(flights)
        expected = pre.transform(rows)
        as_lists = {c: rows[c].tolist() for c in NUMERIC + CATEGORICAL}
        as_arrays = {c: rows[c].to_numpy() for c in NUMERIC + CATEGORICAL}
        np.testing.assert_array_equal(pre.transform(as_lists), expected)
        np.testing.assert_array_equal(pre.transform(as_arrays), expected)


def test_a_mapping_of_scalars_is_one_row(flights: pd.DataFrame) -> None:
    pre = Preprocessor(NUMERIC, CATEGORICAL).fit(flights)
    row = flights.iloc[0]
    single = pre.transform({c: row[c] for c in NUMERIC + CATEGORICAL})
    np.testing.assert_array_equal(single, pre.transform(flights.iloc[[0]]))


def test_json_round_trip_is_exact(flights: pd.DataFrame) -> None:
    for mode in ("tree", "linear"):
        pre = Preprocessor(NUMERIC, CATEGORICAL, mode=mode).fit(flights)
        text = json.dumps(pre.to_dict(), allow_nan=False)
        again = Preprocessor.from_dict(json.loads(text))
        assert again.to_dict() == pre.to_dict()
        np.testing.assert_array_equal(again.transform(flights), pre.transform(flights))


def test_an_all_missing_numeric_column_imputes_zero_and_stays_json() -> None:
    pre = Preprocessor(["x"], [], mode="linear").fit({"x": [None, None]})
    assert pre.medians_ == {"x": 0.0}
    json.dumps(pre.to_dict(), allow_nan=False)


@pytest.mark.parametrize(
    ("arguments", "parameter"),
    [
        ({"numeric": [], "categorical": []}, "numeric"),
        ({"numeric": ["a"], "categorical": ["a"]}, "categorical"),
        ({"numeric": ["a"], "categorical": [], "mode": "deep"}, "mode"),
        ({"numeric": ["a"], "categorical": [], "min_category_count": 0}, "min_category_count"),
        ({"numeric": ["a"], "categorical": [], "max_categories": True}, "max_categories"),
    ],
)
def test_bad_parameters_are_named_at_fit(arguments: dict[str, Any], parameter: str) -> None:
    pre = Preprocessor(**arguments)
    with pytest.raises(InvalidParameterError) as caught:
        pre.fit({"a": [1.0]})
    assert caught.value.parameter == parameter


def test_data_errors_name_the_column() -> None:
    pre = Preprocessor(["x"], ["c"]).fit({"x": [1.0], "c": ["a"]})
    with pytest.raises(SchemaError) as missing:
        pre.transform({"x": [1.0]})
    assert missing.value.column == "c"
    with pytest.raises(SchemaError) as text:
        pre.transform({"x": ["not a number"], "c": ["a"]})
    assert text.value.column == "x"
    with pytest.raises(SchemaError, match="different lengths"):
        pre.transform({"x": [1.0, 2.0], "c": ["a"]})


def test_unfitted_and_malformed_states_are_refused() -> None:
    with pytest.raises(TrainingError, match="not fitted"):
        Preprocessor(["x"], []).transform({"x": [1.0]})
    payload = Preprocessor(["x"], []).fit({"x": [1.0]}).to_dict()
    with pytest.raises(TrainingError, match="format version"):
        Preprocessor.from_dict({**payload, "format_version": 99})
    with pytest.raises(TrainingError, match="malformed"):
        Preprocessor.from_dict({k: v for k, v in payload.items() if k != "medians"})
    with pytest.raises(TrainingError, match="column lists"):
        Preprocessor.from_dict({**payload, "medians": {"y": 1.0}})


def test_checked_columns_give_the_same_matrix_as_the_general_path() -> None:
    frame = pd.DataFrame(
        {"x": [1.0, 2.0, np.nan, 4.0], "c": ["a", "b", "a", None], "d": ["u", "u", "v", "v"]}
    )
    fitted = Preprocessor(numeric=["x"], categorical=["c", "d"], mode="tree").fit(frame)
    # what a request validator hands over: float64 numbers, canonical keys or None
    checked = {
        "x": np.array([3.0, np.nan, 1.0]),
        "c": np.array(["b", None, "zz"], dtype=object),
        "d": np.array(["v", "u", None], dtype=object),
    }
    fast = fitted.transform_checked(checked)
    np.testing.assert_array_equal(fast, fitted.transform(checked))
    assert fast[2, 1] == len(fitted.categories_["c"])  # an unseen category is *other*
    refit = fitted.fit(frame.assign(c=["q", "q", "q", "r"]))  # a new fit, new codes
    assert refit.transform_checked({"x": [1.0], "c": ["q"], "d": ["u"]})[0, 1] == 0.0
