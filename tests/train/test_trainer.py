from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from setpoint.config.spec import ModelRecipe, SplitSpec, Task, ThresholdSpec
from setpoint.errors import InvalidParameterError, SchemaError, TrainingError
from setpoint.train.split import time_split
from setpoint.train.tabular_model import TabularModel
from setpoint.train.trainer import TrainResult, train_model

from .conftest import CATEGORICAL, FAST, NUMERIC, train_binary


def test_binary_result_is_complete(binary_result: TrainResult) -> None:
    result = binary_result
    assert set(result.metrics) == {"valid", "test"}
    test = result.metrics["test"]
    assert 0.55 < test["roc_auc"] < 1
    assert test["pr_auc"] > test["base_rate"]
    assert result.split["time_aware"]
    assert sum(result.split["rows"].values()) == 30_000
    assert result.n_features == 6
    assert result.best_iteration is not None
    assert 1 <= result.best_iteration < 2000
    assert result.params["learning_rate"] == 0.1
    assert result.params["seed"] == 42
    assert set(result.timings) == {"prepare", "fit", "calibrate", "evaluate", "total"}
    assert result.test_scores.shape == result.test_index.shape == result.test_labels.shape
    assert result.threshold is not None
    assert 0 < result.threshold.value < 1
    origins = [entry["segment"] for entry in result.segment_metrics["origin"]]
    assert sorted(origins) == ["EWR", "JFK", "LGA"]
    json.dumps(result.to_dict(), allow_nan=False)


def test_same_data_and_seed_give_byte_identical_files(
    flights: pd.DataFrame, binary_result: TrainResult, linear_result: TrainResult
) -> None:
    assert train_binary(flights).model.to_files() == binary_result.model.to_files()
    linear = train_binary(flights, ModelRecipe(family="linear")).model.to_files()
    assert linear == linear_result.model.to_files()
    other_seed = train_binary(flights, FAST.model_copy(update={"seed": 7}))
    assert other_seed.model.to_files()["model.txt"] != binary_result.model.to_files()["model.txt"]


def test_regression_on_arrival_delay(flights: pd.DataFrame) -> None:
    result = train_model(
        flights,
        task="regression",
        target="arr_delay",
        features_numeric=[*NUMERIC, "dep_delay"],
        features_categorical=CATEGORICAL,
        timestamp="time_hour",
        recipe=FAST,
        primary_metric="rmse",
    )
    test = result.metrics["test"]
    assert test["mae"] < test["rmse"] < flights["arr_delay"].std()
    assert result.params["metric"] == "rmse"
    assert result.threshold is None
    rows = flights.iloc[result.test_index]
    np.testing.assert_array_equal(result.model.predict(rows), result.test_scores)


@pytest.mark.parametrize(
    ("recipe", "metric"),
    [
        (FAST.model_copy(update={"class_weight": "balanced"}), "roc_auc"),
        (ModelRecipe(family="linear"), "log_loss"),
    ],
    ids=["lightgbm-balanced", "linear"],
)
def test_multiclass_predicts_the_origin_airport(
    flights: pd.DataFrame, recipe: ModelRecipe, metric: str
) -> None:
    # 10k of the 30k flights: three classes, every carrier and most destinations, and a
    # fifth of the training time (the carrier and destination all but name the airport).
    flights = flights.iloc[:10_000]
    result = train_model(
        flights,
        task=Task.MULTICLASS,
        target="origin",
        features_numeric=NUMERIC,
        features_categorical=["carrier", "dest"],
        timestamp="time_hour",
        recipe=recipe,
        primary_metric=metric,
    )
    assert result.model.classes == ["EWR", "JFK", "LGA"]
    test = result.metrics["test"]
    assert test["accuracy"] > 0.5
    assert test["log_loss"] < math.log(3)
    assert result.test_scores.shape == (len(result.test_index), 3)
    np.testing.assert_allclose(result.test_scores.sum(axis=1), 1.0)
    labels = result.model.predict(flights.iloc[result.test_index])
    assert set(labels) <= {"EWR", "JFK", "LGA"}
    loaded = TabularModel.from_files(result.model.to_files())
    np.testing.assert_array_equal(loaded.predict(flights.iloc[result.test_index]), labels)


def test_linear_regression_and_string_binary_labels(flights: pd.DataFrame) -> None:
    frame = flights.assign(status=np.where(flights["late"], "late", "on time"))
    result = train_model(
        frame,
        task="binary",
        target="status",
        features_numeric=NUMERIC,
        features_categorical=CATEGORICAL,
        timestamp="time_hour",
        recipe=ModelRecipe(family="linear"),
        primary_metric="roc_auc",
        positive_label="late",
    )
    assert result.model.classes == ["on time", "late"]
    assert set(result.model.predict(frame.iloc[:100])) <= {"late", "on time"}
    assert result.metrics["test"]["roc_auc"] > 0.55


def test_balanced_class_weight_is_calibrated_back(
    flights: pd.DataFrame, binary_result: TrainResult
) -> None:
    result = train_binary(flights, FAST.model_copy(update={"class_weight": "balanced"}))
    assert result.params["scale_pos_weight"] > 2
    rows = flights.iloc[result.test_index]
    raw = result.model.predict_scores(rows, calibrated=False)
    # Weighting inflates raw probabilities; calibration brings them back down.
    assert raw.mean() > binary_result.test_scores.mean() + 0.05
    assert abs(result.test_scores.mean() - binary_result.test_scores.mean()) < 0.03


def test_recipe_params_override_defaults_by_any_alias(flights: pd.DataFrame) -> None:
    recipe = ModelRecipe(params={"eta": 0.2, "n_estimators": 30, "min_child_samples": 100})
    result = train_binary(flights, recipe, primary_metric="roc_auc")
    params = result.params
    assert params["learning_rate"] == 0.2
    assert params["min_data_in_leaf"] == 100
    assert params["num_boost_round"] == 30
    assert "eta" not in params
    assert params["metric"] == "auc"
    assert result.best_iteration is not None
    assert result.best_iteration <= 30


def test_threshold_objective_from_the_recipe(flights: pd.DataFrame) -> None:
    spec = ThresholdSpec(objective="recall_at_precision", precision=0.5)
    result = train_binary(flights, FAST.model_copy(update={"threshold": spec}))
    assert result.threshold is not None
    assert result.threshold.objective == "recall_at_precision"
    assert result.threshold.precision >= 0.5 or result.threshold.fallback


def test_progress_reports_climb_to_one(flights: pd.DataFrame) -> None:
    seen: list[tuple[str, float]] = []
    train_binary(flights, progress=lambda stage, fraction: seen.append((stage, fraction)))
    fractions = [fraction for _, fraction in seen]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    assert {"prepare", "fit", "evaluate"} <= {stage for stage, _ in seen}


def test_without_a_test_slice_only_validation_is_scored(flights: pd.DataFrame) -> None:
    recipe = FAST.model_copy(update={"split": SplitSpec(test_fraction=0)})
    result = train_binary(flights.iloc[:5000], recipe)
    assert set(result.metrics) == {"valid"}
    assert result.test_scores.size == 0
    assert result.segment_metrics == {}


@pytest.mark.parametrize(
    ("task", "values", "message"),
    [
        ("binary", [True] * 300, "one class only"),
        ("multiclass", ["a"] * 300, "one class only"),
        ("binary", [0, 1, 2] * 100, "3 distinct values"),
        ("binary", [0, 1, None] * 100, "100 missing values"),
        ("regression", ["1.5", "2", "3"] * 100, "must be numeric"),
        ("regression", [True, False, True] * 100, "must be numeric"),
        ("regression", [3.0] * 300, "one value only"),
        ("regression", [1.0, 2.0, float("inf")] * 100, "infinite"),
        ("multiclass", [i / 10 for i in range(300)], "is it a regression target"),
    ],
)
def test_bad_targets_name_the_column(task: str, values: list[object], message: str) -> None:
    frame = pd.DataFrame(
        {
            "y": pd.Series(values, dtype=object if task != "regression" else None),
            "x": np.arange(300.0),
            "t": pd.date_range("2024-01-01", periods=300, freq="h"),
        }
    )
    with pytest.raises(TrainingError, match=message) as caught:
        train_model(
            frame,
            task=task,
            target="y",
            features_numeric=["x"],
            features_categorical=[],
            timestamp="t",
            recipe=FAST,
            primary_metric={"binary": "pr_auc", "multiclass": "log_loss"}.get(task, "rmse"),
        )
    assert caught.value.context["column"] == "y"


def test_bad_arguments(flights: pd.DataFrame) -> None:
    with pytest.raises(InvalidParameterError) as metric:
        train_binary(flights, primary_metric="rmse")
    assert metric.value.parameter == "primary_metric"
    with pytest.raises(InvalidParameterError) as clash:
        train_binary(flights, features_numeric=["late", "distance"])
    assert clash.value.parameter == "features"
    with pytest.raises(SchemaError) as missing:
        train_binary(flights, segments=["runway"])
    assert missing.value.column == "runway"
    with pytest.raises(InvalidParameterError) as task:
        train_binary(flights, task="ranking")
    assert task.value.parameter == "task"
    with pytest.raises(InvalidParameterError) as weights:
        train_model(
            flights,
            task="regression",
            target="arr_delay",
            features_numeric=NUMERIC,
            features_categorical=[],
            timestamp="time_hour",
            recipe=ModelRecipe(class_weight="balanced"),
            primary_metric="rmse",
        )
    assert weights.value.parameter == "recipe.class_weight"
    with pytest.raises(InvalidParameterError) as linear:
        train_binary(flights, ModelRecipe(family="linear", params={"num_leaves": 3}))
    assert linear.value.parameter == "recipe.params"


def test_a_class_missing_from_training_is_an_error() -> None:
    frame = pd.DataFrame(
        {
            "y": ["a", "b"] * 40 + ["c"] * 20,
            "x": np.arange(100.0),
            "t": pd.date_range("2024-01-01", periods=100, freq="h"),
        }
    )
    with pytest.raises(TrainingError, match=r"\['c'\].*no training rows"):
        train_model(
            frame,
            task="multiclass",
            target="y",
            features_numeric=["x"],
            features_categorical=[],
            timestamp="t",
            recipe=FAST,
            primary_metric="log_loss",
        )


def test_shuffled_test_slice_does_not_depend_on_the_recipe_seed(flights: pd.DataFrame) -> None:
    frame = flights.iloc[:6000]
    seeds = [
        train_binary(frame, FAST.model_copy(update={"seed": s}), timestamp=None) for s in (1, 2)
    ]
    assert not seeds[0].split["time_aware"]
    # A gate recomputing the holdout the plain way gets the same rows.
    expected = time_split(frame, timestamp=None, split=FAST.split).test
    np.testing.assert_array_equal(seeds[0].test_index, expected)
    np.testing.assert_array_equal(seeds[1].test_index, expected)
