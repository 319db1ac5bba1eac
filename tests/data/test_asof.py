"""asof_join: the latest feature row at or before each event, never a later one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from setpoint.data.asof import asof_join
from setpoint.errors import InvalidParameterError, SchemaError


def times(*values: str, tz: str | None = None) -> pd.Series:
    """Datetimes with a RangeIndex; frames with another index take ``.array``."""
    return pd.Series(pd.to_datetime(list(values))).dt.tz_localize(tz)


@pytest.fixture
def events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user": [2, 1, 1, 3, 1],
            "t": times("2024-01-05", "2024-01-03", "2024-01-01", "2024-01-04", "2024-01-10").array,
            "label": [0, 1, 0, 1, 1],
        },
        index=[50, 40, 30, 20, 10],
    )


@pytest.fixture
def features() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user": [1, 2, 1, 1],
            "ft": times("2024-01-03", "2024-01-01", "2024-01-02", "2024-01-11"),
            "spend": [30, 10, 20, 99],
        }
    )


def test_picks_latest_past_row_keeping_order_and_index(
    events: pd.DataFrame, features: pd.DataFrame
) -> None:
    out = asof_join(events, features, by="user", event_time="t", feature_time="ft")
    assert out.index.tolist() == [50, 40, 30, 20, 10]
    assert list(out.columns) == ["user", "t", "label", "ft", "spend"]
    assert out["spend"].tolist()[:2] == [10.0, 30.0]
    assert np.isnan(out["spend"].iloc[2])
    assert np.isnan(out["spend"].iloc[3])
    assert out["spend"].iloc[4] == 30.0
    assert (out["ft"].dropna() <= out.loc[out["ft"].notna(), "t"]).all()


def test_exact_matches_and_tolerance(events: pd.DataFrame, features: pd.DataFrame) -> None:
    strict = asof_join(
        events, features, by="user", event_time="t", feature_time="ft", allow_exact_matches=False
    )
    assert strict["spend"].iloc[1] == 20.0
    near = asof_join(
        events,
        features,
        by="user",
        event_time="t",
        feature_time="ft",
        tolerance=pd.Timedelta(days=2),
    )
    assert np.isnan(near["spend"].iloc[4])
    assert near["spend"].iloc[1] == 30.0


def test_duplicate_feature_times_take_the_last_by_input_order() -> None:
    events = pd.DataFrame({"k": ["a"], "t": times("2024-01-02")})
    features = pd.DataFrame(
        {"k": ["a", "a", "a"], "t": times("2024-01-01", "2024-01-01", "2024-01-01"), "v": [1, 2, 3]}
    )
    out = asof_join(events, features, by="k", event_time="t", feature_time="t")
    assert out["v"].tolist() == [3]
    assert list(out.columns) == ["k", "t", "t_feat", "v"]


def test_null_keys_and_times_match_nothing() -> None:
    events = pd.DataFrame({"k": [1.0, np.nan, 1.0], "t": times("2024-01-05", "2024-01-05", "NaT")})
    features = pd.DataFrame(
        {
            "k": [1.0, np.nan, 1.0],
            "ft": times("2024-01-01", "2024-01-02", "NaT"),
            "v": ["one", "nan-key", "nat"],
        }
    )
    out = asof_join(events, features, by="k", event_time="t", feature_time="ft")
    assert out["v"].tolist()[0] == "one"
    assert out["v"].isna().tolist() == [False, True, True]


def test_several_keys_and_suffix() -> None:
    events = pd.DataFrame({"a": [1, 1], "b": ["x", "y"], "t": times("2024-01-02", "2024-01-02")})
    features = pd.DataFrame(
        {"a": [1, 1], "b": ["y", "x"], "t": times("2024-01-01", "2024-01-01"), "v": [10, 20]}
    )
    out = asof_join(events, features, by=["a", "b"], event_time="t", feature_time="t", suffix="_f")
    assert out["v"].tolist() == [20, 10]
    assert "t_f" in out.columns


def test_timezones() -> None:
    events = pd.DataFrame({"k": [1], "t": times("2024-01-01 12:00", tz="Europe/Paris")})
    features = pd.DataFrame(
        {"k": [1, 1], "ft": times("2024-01-01 10:30", "2024-01-01 11:30", tz="UTC"), "v": [1, 2]}
    )
    out = asof_join(events, features, by="k", event_time="t", feature_time="ft")
    assert out["v"].tolist() == [1]
    naive = features.assign(ft=features["ft"].dt.tz_localize(None))
    with pytest.raises(SchemaError) as info:
        asof_join(events, naive, by="k", event_time="t", feature_time="ft")
    assert "events['t'] is timezone-aware but features['ft'] is naive" in str(info.value)


def test_different_datetime_units_and_key_dtypes() -> None:
    events = pd.DataFrame({"k": [1, 2], "t": times("2024-01-02", "2024-01-02").dt.as_unit("s")})
    features = pd.DataFrame(
        {"k": [1.0, 2.0], "t": times("2024-01-01", "2024-01-01").dt.as_unit("ns"), "v": [5, 6]}
    )
    out = asof_join(events, features, by="k", event_time="t", feature_time="t")
    assert out["v"].tolist() == [5, 6]
    text_keys = features.assign(k=["1", "2"])
    with pytest.raises(SchemaError, match="the key 'k' is int64 in events but str in features"):
        asof_join(events, text_keys, by="k", event_time="t", feature_time="t")


def test_missing_and_non_datetime_columns(events: pd.DataFrame, features: pd.DataFrame) -> None:
    with pytest.raises(
        SchemaError, match=r"features has no column 'user' \(did you mean 'usr'\?\)"
    ):
        asof_join(
            events,
            features.rename(columns={"user": "usr"}),
            by="user",
            event_time="t",
            feature_time="ft",
        )
    with pytest.raises(SchemaError, match=r"events\['t'\] has dtype str, not datetime"):
        asof_join(
            events.astype({"t": "str"}), features, by="user", event_time="t", feature_time="ft"
        )


def test_suffix_clash(events: pd.DataFrame, features: pd.DataFrame) -> None:
    clashing = events.assign(spend=0, spend_feat=1)
    with pytest.raises(SchemaError, match=r"would be named \['spend_feat'\]"):
        asof_join(clashing, features, by="user", event_time="t", feature_time="ft")


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"by": []}, "by"),
        ({"tolerance": pd.Timedelta(days=-1)}, "tolerance"),
        ({"tolerance": 3}, "tolerance"),
        ({"suffix": ""}, "suffix"),
        ({"allow_exact_matches": "yes"}, "allow_exact_matches"),
    ],
)
def test_bad_parameters(
    events: pd.DataFrame, features: pd.DataFrame, kwargs: dict[str, object], parameter: str
) -> None:
    arguments: dict[str, object] = {"by": "user", "event_time": "t", "feature_time": "ft"}
    arguments.update(kwargs)
    with pytest.raises(InvalidParameterError, match=f"The '{parameter}' parameter of asof_join"):
        asof_join(events, features, **arguments)


def test_empty_inputs(events: pd.DataFrame, features: pd.DataFrame) -> None:
    out = asof_join(events.iloc[:0], features, by="user", event_time="t", feature_time="ft")
    assert len(out) == 0
    assert list(out.columns) == ["user", "t", "label", "ft", "spend"]
    out = asof_join(events, features.iloc[:0], by="user", event_time="t", feature_time="ft")
    assert out["spend"].isna().all()
    assert len(out) == len(events)
