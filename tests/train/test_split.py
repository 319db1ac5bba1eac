from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from setpoint.config.spec import SplitSpec, Task
from setpoint.errors import SchemaError, TrainingError
from setpoint.train.split import time_split


def _times(frame: pd.DataFrame, rows: np.ndarray) -> pd.Series:
    return pd.to_datetime(frame["time_hour"].iloc[rows], utc=True)


def test_time_split_orders_train_before_valid_before_test(flights: pd.DataFrame) -> None:
    split = time_split(flights, timestamp="time_hour", split=SplitSpec())
    train, valid, test = (_times(flights, r) for r in (split.train, split.valid, split.test))
    # Strictly earlier: flights share departure hours, and a shared hour never straddles.
    assert train.max() < valid.min()
    assert valid.max() < test.min()
    every = np.concatenate([split.train, split.valid, split.test])
    assert np.array_equal(np.sort(every), np.arange(len(flights)))
    assert split.time_aware
    assert split.dropped == 0
    n = len(flights)
    assert abs(len(split.test) - 0.15 * n) < 0.01 * n
    assert abs(len(split.valid) - 0.15 * (n - len(split.test))) < 0.01 * n
    summary = split.summary()
    assert summary["rows"] == {
        "train": len(split.train),
        "valid": len(split.valid),
        "test": len(split.test),
    }
    first = pd.to_datetime(flights["time_hour"]).min()
    assert summary["ranges"]["train"][0] == first.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_test_from_puts_every_later_row_in_test(flights: pd.DataFrame) -> None:
    split = time_split(flights, timestamp="time_hour", split=SplitSpec(test_from="2013-11-01"))
    boundary = pd.Timestamp("2013-11-01", tz="UTC")
    assert (_times(flights, split.test) >= boundary).all()
    assert (_times(flights, np.concatenate([split.train, split.valid])) < boundary).all()
    assert _times(flights, split.train).max() < _times(flights, split.valid).min()


def test_test_from_in_another_zone_is_compared_in_utc(flights: pd.DataFrame) -> None:
    utc = time_split(flights, timestamp="time_hour", split=SplitSpec(test_from="2013-11-01T05:00Z"))
    eastern = time_split(
        flights, timestamp="time_hour", split=SplitSpec(test_from="2013-11-01T01:00-04:00")
    )
    assert np.array_equal(utc.test, eastern.test)


def test_naive_datetime_and_numeric_timestamps() -> None:
    frame = pd.DataFrame(
        {"t": pd.date_range("2024-01-01", periods=100, freq="h"), "n": np.arange(100.0)}
    )
    by_date = time_split(frame, timestamp="t", split=SplitSpec(test_from="2024-01-04T00:00+00:00"))
    assert by_date.test.tolist() == list(range(72, 100))
    by_number = time_split(frame, timestamp="n", split=SplitSpec(test_from="72"))
    assert by_number.test.tolist() == list(range(72, 100))
    assert by_number.ranges["test"] == ["72.0", "99.0"]


def test_rows_without_a_timestamp_are_left_out_and_counted() -> None:
    times = pd.Series(pd.date_range("2024-01-01", periods=40, freq="D"))
    times = times.where(~times.index.isin([3, 17]))
    split = time_split(pd.DataFrame({"t": times}), timestamp="t", split=SplitSpec())
    assert split.dropped == 2
    kept = np.concatenate([split.train, split.valid, split.test])
    assert 3 not in kept
    assert 17 not in kept
    assert len(kept) == 38


def test_shuffled_fallback_is_seeded_and_says_so(flights: pd.DataFrame) -> None:
    one = time_split(flights, timestamp=None, split=SplitSpec(), seed=3)
    two = time_split(flights, timestamp=None, split=SplitSpec(), seed=3)
    other = time_split(flights, timestamp=None, split=SplitSpec(), seed=4)
    assert not one.time_aware
    assert one.summary()["time_aware"] is False
    assert np.array_equal(one.test, two.test)
    assert not np.array_equal(one.test, other.test)
    assert len(one.train) + len(one.valid) + len(one.test) == len(flights)


def test_an_empty_slice_is_an_error() -> None:
    frame = pd.DataFrame({"t": pd.to_datetime(["2024-01-01"] * 10)})
    # All rows share one timestamp: no cut can separate them.
    with pytest.raises(TrainingError, match="slice is empty"):
        time_split(frame, timestamp="t", split=SplitSpec())
    late = pd.DataFrame({"t": pd.date_range("2024-01-01", periods=10)})
    with pytest.raises(TrainingError, match="test slice is empty"):
        time_split(late, timestamp="t", split=SplitSpec(test_from="2030-01-01"))


def test_zero_test_fraction_means_no_test_slice() -> None:
    frame = pd.DataFrame({"t": pd.date_range("2024-01-01", periods=20)})
    split = time_split(frame, timestamp="t", split=SplitSpec(test_fraction=0))
    assert split.test.size == 0
    assert split.ranges["test"] is None


def test_a_binary_validation_slice_needs_both_classes() -> None:
    frame = pd.DataFrame(
        {"t": pd.date_range("2024-01-01", periods=100), "y": [1, 0] * 35 + [0] * 30}
    )
    with pytest.raises(TrainingError, match="only one class") as caught:
        time_split(frame, timestamp="t", split=SplitSpec(), target="y", task=Task.BINARY)
    assert caught.value.context["column"] == "y"


def test_bad_timestamp_columns() -> None:
    frame = pd.DataFrame({"t": ["soon", "later"]})
    with pytest.raises(SchemaError):
        time_split(frame, timestamp="missing", split=SplitSpec())
    with pytest.raises(TrainingError, match="cannot be read as dates"):
        time_split(frame, timestamp="t", split=SplitSpec())
    dates = pd.DataFrame({"t": pd.date_range("2024-01-01", periods=10)})
    with pytest.raises(TrainingError, match="not a date"):
        time_split(dates, timestamp="t", split=SplitSpec(test_from="someday"))
