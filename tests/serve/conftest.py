"""One real flights project per session; each test serves its own copy."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from _support.serving import build_project, copy_project, events


@pytest.fixture(scope="session")
def flights(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return events(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def base_project(flights: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("base") / "flights"
    build_project(root, flights)
    return root


@pytest.fixture
def project_dir(base_project: Path, tmp_path: Path) -> Path:
    """A private copy of the base project: champion v1, v2 registered."""
    return copy_project(base_project, tmp_path / "flights")
