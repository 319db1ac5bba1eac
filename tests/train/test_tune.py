from __future__ import annotations

import sys
from typing import Any

import optuna
import pandas as pd
import pytest

from setpoint.config.spec import ModelRecipe, Task, TuningSpec
from setpoint.errors import InvalidParameterError, MissingExtraError
from setpoint.train.tune import tune

from .conftest import CATEGORICAL, NUMERIC


def _tune(frame: pd.DataFrame, recipe: ModelRecipe, **options: Any) -> dict[str, Any]:
    found: dict[str, Any] = tune(
        frame,
        task=Task.BINARY,
        target="late",
        features_numeric=NUMERIC,
        features_categorical=CATEGORICAL,
        timestamp="time_hour",
        recipe=recipe,
        primary_metric="pr_auc",
        **options,
    )
    return found


@pytest.fixture(scope="module")
def sample(flights: pd.DataFrame) -> pd.DataFrame:
    return flights.iloc[:10_000]


def test_search_is_seeded_and_keeps_fixed_params(sample: pd.DataFrame) -> None:
    recipe = ModelRecipe(params={"eta": 0.2}, tuning=TuningSpec(trials=3))
    first = _tune(sample, recipe)
    assert first == _tune(sample, recipe)
    assert first["eta"] == 0.2
    assert "learning_rate" not in first
    assert {"num_leaves", "min_data_in_leaf", "feature_fraction"} <= set(first)
    other = _tune(sample, recipe.model_copy(update={"seed": 1}))
    assert other != first


def test_linear_family_searches_its_regularisation(sample: pd.DataFrame) -> None:
    found = _tune(sample, ModelRecipe(family="linear"), trials=2)
    assert set(found) == {"C"}
    assert float(found["C"]) > 0


def test_optuna_logging_is_restored_and_progress_reported(sample: pd.DataFrame) -> None:
    before = optuna.logging.get_verbosity()
    seen: list[float] = []
    _tune(sample, ModelRecipe(), trials=2, progress=lambda stage, fraction: seen.append(fraction))
    assert optuna.logging.get_verbosity() == before
    assert seen == [0.5, 1.0]


def test_nothing_to_search_returns_the_recipe_params(sample: pd.DataFrame) -> None:
    assert _tune(sample, ModelRecipe(params={"num_leaves": 7})) == {"num_leaves": 7}


def test_bad_budgets_are_refused(sample: pd.DataFrame) -> None:
    with pytest.raises(InvalidParameterError):
        _tune(sample, ModelRecipe(), trials=-1)
    with pytest.raises(InvalidParameterError):
        _tune(sample, ModelRecipe(), trials=1, timeout_s=0)


def test_missing_optuna_names_the_extra(
    sample: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # what an absent package looks like
    with pytest.raises(MissingExtraError) as caught:
        _tune(sample, ModelRecipe(), trials=1)
    assert caught.value.extra == "tune"
    assert "setpoint[tune]" in str(caught.value)
