"""The session's flights project (tests/conftest.py); each test serves its own copy."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from _support.serving import copy_project


@pytest.fixture(scope="session")
def flights(flight_events: pd.DataFrame) -> pd.DataFrame:
    """The flights the project was trained on (the session's ``flight_events``)."""
    return flight_events


@pytest.fixture
def project_dir(flights_project: Path, tmp_path: Path) -> Path:
    """A private copy of the session's flights project: champion v1, v2 registered."""
    return copy_project(flights_project, tmp_path / "flights")
