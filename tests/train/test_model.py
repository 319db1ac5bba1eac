from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from setpoint.config.spec import Task
from setpoint.errors import ConfigError, DataError, TrainingError
from setpoint.train.tabular_model import TabularModel
from setpoint.train.trainer import TrainResult

from .conftest import CATEGORICAL, NUMERIC

FEATURES = NUMERIC + CATEGORICAL


@pytest.fixture(params=["lightgbm", "linear"])
def result(request: pytest.FixtureRequest) -> TrainResult:
    name = "binary_result" if request.param == "lightgbm" else "linear_result"
    value: TrainResult = request.getfixturevalue(name)
    return value


def test_files_are_text_and_name_the_parts(result: TrainResult) -> None:
    files = result.model.to_files()
    model_file = "model.txt" if result.model.family == "lightgbm" else "linear.json"
    assert set(files) == {"model.json", "preprocess.json", model_file}
    for raw in files.values():
        raw.decode("utf-8")  # nothing binary, nothing pickled
    meta = json.loads(files["model.json"])
    assert meta["format"] == "setpoint.tabular"
    assert meta["task"] == "binary"
    assert meta["classes"] == [False, True]
    assert meta["threshold"]["objective"] == "f1"


def test_round_trip_predicts_identically(result: TrainResult, flights: pd.DataFrame) -> None:
    files = result.model.to_files()
    loaded = TabularModel.from_files(files, task="binary")
    assert loaded.to_files() == files
    rows = flights.iloc[:2000]
    np.testing.assert_array_equal(loaded.predict_scores(rows), result.model.predict_scores(rows))
    np.testing.assert_array_equal(loaded.predict(rows), result.model.predict(rows))


def test_test_scores_are_what_the_saved_model_predicts(
    result: TrainResult, flights: pd.DataFrame
) -> None:
    loaded = TabularModel.from_files(result.model.to_files())
    again = loaded.predict_scores(flights.iloc[result.test_index])
    np.testing.assert_array_equal(again, result.test_scores)


def test_mapping_input_equals_dataframe_input(result: TrainResult, flights: pd.DataFrame) -> None:
    rows = flights.iloc[:300]
    expected = result.model.predict_scores(rows)
    as_lists = {c: rows[c].tolist() for c in FEATURES}
    as_arrays = {c: rows[c].to_numpy() for c in FEATURES}
    np.testing.assert_array_equal(result.model.predict_scores(as_lists), expected)
    np.testing.assert_array_equal(result.model.predict_scores(as_arrays), expected)
    one = {c: rows[c].iloc[0] for c in FEATURES}  # scalars: a single request
    np.testing.assert_array_equal(result.model.predict_scores(one), expected[:1])


def test_unseen_categories_score_like_the_other_bucket(
    result: TrainResult, flights: pd.DataFrame
) -> None:
    rows = flights.iloc[:50].copy()
    unseen = rows.assign(carrier="ZZ", dest="NOWHERE", origin=None)
    scores = result.model.predict_scores(unseen)
    assert np.isfinite(scores).all()
    assert ((scores > 0) & (scores < 1)).all()
    twice = rows.assign(carrier="QQ", dest="ELSEWHERE", origin=None)
    np.testing.assert_array_equal(result.model.predict_scores(twice), scores)


def test_num_threads_does_not_change_predictions(
    flights: pd.DataFrame, binary_result: TrainResult
) -> None:
    rows = flights.iloc[:1000]
    one = binary_result.model.predict_scores(rows, num_threads=1)
    np.testing.assert_array_equal(one, binary_result.model.predict_scores(rows, num_threads=2))
    loaded = TabularModel.from_files(binary_result.model.to_files(), num_threads=1)
    assert loaded.num_threads == 1
    np.testing.assert_array_equal(loaded.predict_scores(rows), one)


def test_predict_applies_the_threshold(result: TrainResult, flights: pd.DataFrame) -> None:
    rows = flights.iloc[:1000]
    labels = result.model.predict(rows)
    scores = result.model.predict_scores(rows)
    assert labels.dtype == np.bool_
    np.testing.assert_array_equal(labels, scores >= result.model.threshold_value)


def test_feature_importance_covers_every_input_column(result: TrainResult) -> None:
    importance = result.model.feature_importance()
    assert sorted(importance) == sorted(FEATURES)
    values = list(importance.values())
    assert values == sorted(values, reverse=True)
    assert min(values) >= 0
    assert values[0] > 0


def test_encode_labels(binary_result: TrainResult) -> None:
    model = binary_result.model
    assert model.encode_labels(pd.Series([True, False, np.True_])).tolist() == [1.0, 0.0, 1.0]
    with pytest.raises(DataError, match="does not know"):
        model.encode_labels(["maybe"])


def _edited(files: dict[str, bytes], name: str, **changes: object) -> dict[str, bytes]:
    payload = json.loads(files[name])
    payload.update(changes)
    return {**files, name: json.dumps(payload).encode()}


@pytest.mark.hostile
def test_from_files_refuses_what_it_cannot_trust(binary_result: TrainResult) -> None:
    files = binary_result.model.to_files()
    with pytest.raises(ConfigError, match="binary task"):
        TabularModel.from_files(files, task=Task.REGRESSION)
    with pytest.raises(TrainingError, match="format version"):
        TabularModel.from_files(_edited(files, "model.json", format_version=2))
    with pytest.raises(TrainingError, match="not a setpoint"):
        TabularModel.from_files(_edited(files, "model.json", format="other"))
    with pytest.raises(TrainingError, match="malformed"):
        TabularModel.from_files(_edited(files, "model.json", task="ranking"))
    with pytest.raises(TrainingError, match=r"lack 'model\.txt'"):
        TabularModel.from_files({k: v for k, v in files.items() if k != "model.txt"})
    with pytest.raises(TrainingError, match="not valid JSON"):
        TabularModel.from_files({**files, "preprocess.json": b"{"})
    with pytest.raises(TrainingError, match="cannot be read"):
        TabularModel.from_files({**files, "model.txt": b"tree\nversion=v4\nnonsense"})
    features = {"numeric": NUMERIC[:1], "categorical": CATEGORICAL}
    with pytest.raises(TrainingError, match="different features"):
        TabularModel.from_files(_edited(files, "model.json", features=features))
    with pytest.raises(TrainingError, match="class labels"):
        TabularModel.from_files(_edited(files, "model.json", classes=[True]))
