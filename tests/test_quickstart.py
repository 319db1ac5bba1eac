"""The README's first command: the quickstart on the real flights data."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from setpoint.project import Project
from setpoint.registry.datasets import list_datasets

pytestmark = pytest.mark.slow


def _quickstart(directory: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETPOINT_")}
    return subprocess.run(
        [sys.executable, "-m", "setpoint", "quickstart", "--dir", str(directory)],
        env={**env, "COLUMNS": "160"},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_quickstart_builds_trains_and_promotes(tmp_path: Path) -> None:
    directory = tmp_path / "qs"
    first = _quickstart(directory)
    assert first.returncode == 0, first.stderr[-3000:]
    match = re.search(r"July PR-AUC: (0\.\d+)", first.stdout)
    assert match, first.stdout
    pr_auc = float(match.group(1))
    late_share = 0.25  # a random ranking scores about the positive rate
    assert pr_auc > late_share + 0.2
    for word in ("Ingested", "July by carrier", "Where everything is", "is champion"):
        assert word in first.stdout

    project = Project.open(directory)
    assert project.aliases() == {"champion": 1}
    batches = list_datasets(project.store, project="flights")
    assert [b.version for b in batches] == list(range(1, 8))
    assert sum(b.n_rows + b.n_quarantined for b in batches) == 195_583  # January-July
    unseen = pd.read_parquet(directory / "data" / "flights-2013-08-12.parquet")
    assert len(unseen) == 336_776 - 195_583
    assert unseen["scheduled_at"].min() >= pd.Timestamp("2013-08-01", tz="America/New_York")

    lineage = project.versions()[0].lineage
    assert lineage["dataset"]["version"] == 7
    assert lineage["split"]["rows"]["test"] > 25_000

    again = _quickstart(directory)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "flights@2" in again.stdout
    assert "challenger" in again.stdout  # the same data and seed give no lead
    assert len(list_datasets(project.store, project="flights")) == 7
    assert project.aliases()["champion"] == 1
