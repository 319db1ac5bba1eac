"""The HTML report of a real monitoring run: one file, Plotly inline, nothing from the network.

The project and its log are a copy of the session's ``logged_project``
(tests/conftest.py): three weeks of real held-out flights, the third with
temperatures +30 degrees.
"""

from __future__ import annotations

import re
import shutil
import sys
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from _support.cli import run as setpoint
from _support.logged import MONDAY, PER_WEEK
from setpoint.errors import MissingExtraError
from setpoint.monitor.html_report import window_inputs, write_report
from setpoint.monitor.results import MonitorResult
from setpoint.monitor.runner import monitor_project
from setpoint.project import Project

NETWORK = re.compile(
    r"<script[^>]*\bsrc\s*=|<link[^>]*\bhref\s*=\s*[\"']?https?:|@import\s+url\(\s*[\"']?https?:",
    re.IGNORECASE,
)


@pytest.fixture(scope="module")
def project(logged_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = shutil.copytree(logged_project, tmp_path_factory.mktemp("r") / "flights")
    return Project.open(root)


@pytest.fixture(scope="module")
def weekly(project: Project) -> MonitorResult:
    return monitor_project(project, window="1w", clock="served")


@pytest.fixture(scope="module")
def latest(project: Project, weekly: MonitorResult) -> pd.DataFrame:
    return window_inputs(project, weekly, weekly.windows[-1], clock="served")


@pytest.fixture(scope="module")
def page(
    project: Project,
    weekly: MonitorResult,
    latest: pd.DataFrame,
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    path = tmp_path_factory.mktemp("report") / "nested" / "monitor.html"
    written = write_report(
        weekly,
        path,
        reference=project.load_reference(weekly.version).reference,
        current=latest,
        setpoint=0.42,
        max_drift_share=0.28,
    )
    assert written == path
    assert [p.name for p in path.parent.iterdir()] == ["monitor.html"]  # no temporary left
    return path.read_text(encoding="utf-8")


def test_window_inputs_are_the_latest_weeks_rows(latest: pd.DataFrame) -> None:
    assert len(latest) == PER_WEEK
    # the third week is the shifted one: far warmer than January in New York
    assert pd.to_numeric(latest["temp"]).mean() > 60


def test_the_report_is_one_offline_file_with_plotly_inline(page: str) -> None:
    from plotly.offline import get_plotlyjs

    bundle = get_plotlyjs()
    assert page.startswith("<!DOCTYPE html>")
    assert page.count(bundle[:2000]) == 1  # the bundle once, not once per chart
    assert NETWORK.search(page) is None, NETWORK.search(page)
    assert "cdn.plot.ly" not in page.replace(bundle, "")
    assert page.count('class="plotly-graph-div"') >= 4


def test_the_report_names_features_windows_and_levels(page: str, weekly: MonitorResult) -> None:
    charts = page[page.index("<body>") :]
    for week in range(3):
        assert (MONDAY + timedelta(days=7 * week)).strftime("%Y-%m-%d") in charts
    for feature in weekly.windows[-1].drift.features:
        assert f'"{feature.name}"' in charts
    assert "temp: share of rows per bin" in charts
    assert "latest window" in charts
    assert "setpoint" in charts
    assert "0.42" in charts
    assert "estimated (CBPE)" in charts


def test_without_plotly_the_extra_is_named(
    weekly: MonitorResult, project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "plotly.graph_objects", None)
    with pytest.raises(MissingExtraError, match=r"setpoint\[monitor\]") as info:
        write_report(weekly, tmp_path / "x.html", reference=project.load_reference(1).reference)
    assert info.value.extra == "monitor"
    assert not (tmp_path / "x.html").exists()


def test_cli_html_writes_the_report(project: Project, tmp_path: Path) -> None:
    out = tmp_path / "out.html"
    result = setpoint(
        "monitor",
        "--window",
        "1w",
        "--clock",
        "served",
        "--no-alerts",
        "--html",
        str(out),
        cwd=project.root,
    )
    assert result.returncode == 0, result.stderr
    assert "report written" in result.stderr
    text = out.read_text(encoding="utf-8")
    assert NETWORK.search(text) is None
    assert "2024-01-15" in text
    assert "temp: share of rows per bin" in text
