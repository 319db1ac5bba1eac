"""The model of bench/serve.py: a setpoint project trained on synthetic data, and
the same booster exported for the peers.

30 numeric features (no categoricals, so that every server feeds the booster
the very values it was sent, with no encoding of its own), a binary target,
``--rows`` rows drawn with a fixed seed. The project is trained through the
public API (``Project.ingest``, ``Project.train``, which promotes the first
model to champion) with 200 trees, no early stopping and no calibration, so
that the champion's score is the booster's raw probability and every server
must return the same number for the same record.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from setpoint.config.loader import SPEC_FILE, dump_spec
from setpoint.config.spec import ModelRecipe, ProjectSpec, Task
from setpoint.project import Project
from setpoint.store.workspace import Store
from setpoint.train.heads import LightGBMHead

N_FEATURES = 30
TREES = 200
FEATURES = [f"x{i:02d}" for i in range(N_FEATURES)]


@dataclass(frozen=True)
class BenchModel:
    project_dir: Path
    version: int
    model_file: Path  # LightGBM's text format, as registered in the project
    features: list[str]  # the booster's column order
    record: dict[str, float]  # the one record every request sends
    score: float  # the booster's probability for it, computed here
    trees: int


def synthetic(rows: int, seed: int) -> pd.DataFrame:
    """Features of mixed shapes, a label from a nonlinear score plus noise (~30% positive)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, N_FEATURES))
    x[:, 10:20] = rng.uniform(0, 100, size=(rows, 10))  # other scales
    x[:, 20:] = rng.exponential(3.0, size=(rows, 10))
    z = (
        x[:, 0] * x[:, 1]
        + np.sin(2 * x[:, 2])
        + x[:, 3] ** 2
        - 1
        + 0.5 * x[:, 4]
        + (x[:, 10] - 50) / 25
        - np.log1p(x[:, 20])
        + 0.8 * (x[:, 5] > 0.5) * x[:, 21] / 3
    )
    frame = pd.DataFrame(np.round(x, 4), columns=FEATURES)
    frame["label"] = z + rng.normal(scale=1.0, size=rows) > 0.5
    frame["row_id"] = [f"r{i:07d}" for i in range(rows)]
    frame["event_time"] = pd.date_range("2024-01-01", periods=rows, freq="min", tz="UTC")
    return frame


def spec() -> ProjectSpec:
    return ProjectSpec(
        project="servebench",
        task=Task.BINARY,
        target="label",
        timestamp="event_time",
        entity="row_id",
        model=ModelRecipe(
            params={"num_iterations": TREES}, early_stopping_rounds=0, calibration="none"
        ),
    )


def build(directory: Path, *, rows: int, seed: int) -> BenchModel:
    """A fresh project in ``directory`` with a champion, and its booster in model.txt."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    project_spec = spec()
    (directory / SPEC_FILE).write_text(dump_spec(project_spec), encoding="utf-8")
    project = Project(project_spec, Store.open(directory), root=directory)
    frame = synthetic(rows, seed)
    project.ingest(frame, name="events")
    outcome = project.train(dataset="events")
    if not outcome.decision.passed:
        project.promote(outcome.version.version, force=True, reason="serving benchmark")
    model = project.load_model("champion")
    project.store.db.dispose()
    head = model.head
    if not isinstance(head, LightGBMHead):
        raise RuntimeError(f"the champion is a {head.family} model, not LightGBM")
    model_file = directory.parent / "model.txt"
    model_file.write_text(head.model_text, encoding="utf-8")
    booster = lgb.Booster(model_file=str(model_file))
    if booster.num_trees() != TREES:
        raise RuntimeError(f"the champion has {booster.num_trees()} trees, not {TREES}")
    names = booster.feature_name()
    if names != model.features:
        raise RuntimeError(f"booster columns {names} differ from the model's {model.features}")
    record = {name: float(frame[name].iloc[0]) for name in names}
    row = np.array([[record[name] for name in names]])
    scores = model.predict_scores({k: [v] for k, v in record.items()})
    score = float(booster.predict(row, num_threads=1)[0])
    if abs(float(scores[0]) - score) > 1e-12:
        raise RuntimeError(f"setpoint scores {scores[0]} but the booster {score}: calibrated?")
    return BenchModel(
        directory, outcome.version.version, model_file, names, record, score, booster.num_trees()
    )


def write_bodies(model: BenchModel, where: Path) -> dict[str, Path]:
    """The request bodies: setpoint's shape, and MLflow's ``dataframe_records``."""
    bodies: dict[str, dict[str, Any]] = {
        "records": {"records": [model.record]},
        "dataframe_records": {"dataframe_records": [model.record]},
    }
    paths = {}
    for name, body in bodies.items():
        paths[name] = where / f"body-{name}.json"
        paths[name].write_text(json.dumps(body), encoding="utf-8")
    return paths
