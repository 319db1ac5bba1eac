"""The tabular kind keeps the promises of ``kinds/protocol.py``, on seeded data."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from setpoint.config.spec import ModelRecipe, ProjectSpec, SplitSpec
from setpoint.errors import ConfigError
from setpoint.kinds.lookup import KINDS, get_kind
from setpoint.kinds.protocol import REFERENCE_FILE, MonitoringReference
from setpoint.kinds.tabular import TABULAR
from setpoint.train.trainer import TrainResult

SPEC = ProjectSpec(
    project="t",
    task="binary",
    target="y",
    timestamp="ts",
    model=ModelRecipe(
        params={"n_estimators": 20}, split=SplitSpec(test_from="2024-02-20", valid_fraction=0.2)
    ),
)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = 2_000
    ts = pd.Timestamp(datetime(2024, 1, 1, tzinfo=UTC)) + pd.to_timedelta(
        np.sort(rng.uniform(0, 60 * 86_400, rows)), unit="s"
    )
    x = rng.normal(size=rows)
    cat = rng.choice(["p", "q"], rows)
    y = (rng.random(rows) < 1 / (1 + np.exp(-(2 * x + (cat == "p"))))).astype(int)
    return pd.DataFrame({"ts": ts, "x": x, "cat": cat, "y": y})


@pytest.fixture(scope="module")
def built(frame: pd.DataFrame) -> TrainResult:
    recipe = TABULAR.recipe(SPEC, num_threads=1)
    return TABULAR.build(frame, spec=SPEC, recipe=recipe, numeric=["x"], categorical=["cat"])


def test_the_kind_is_found_by_its_stored_name() -> None:
    assert get_kind("tabular/v1") is TABULAR
    assert set(KINDS) == {"tabular/v1"}
    with pytest.raises(ConfigError, match=r"'rag/v1'.*known: \['tabular/v1'\]"):
        get_kind("rag/v1")


def test_the_recipe_sets_threads_only_where_the_spec_sets_none() -> None:
    assert TABULAR.recipe(SPEC, num_threads=2).params["num_threads"] == 2
    own = SPEC.model_copy(update={"model": ModelRecipe(params={"num_threads": 1})})
    assert TABULAR.recipe(own, num_threads=2).params["num_threads"] == 1
    split = SplitSpec(test_from="2024-02-01", valid_fraction=0.1)
    assert TABULAR.recipe(SPEC, split=split).split == split


def test_the_holdout_is_what_evaluate_gives_on_the_same_rows(
    frame: pd.DataFrame, built: TrainResult
) -> None:
    index, evaluation = TABULAR.holdout(built)
    rows = frame.iloc[index].reset_index(drop=True)
    assert (rows["ts"] >= pd.Timestamp("2024-02-20", tz="UTC")).all()
    again = TABULAR.evaluate(built.model, rows, target="y")
    np.testing.assert_array_equal(again.labels, evaluation.labels)
    np.testing.assert_allclose(again.scores, evaluation.scores, rtol=0, atol=1e-12)


def test_files_load_back_to_the_same_scores_and_reference(
    frame: pd.DataFrame, built: TrainResult
) -> None:
    reference = TABULAR.reference(built, frame)
    files = TABULAR.files(built, reference)
    assert REFERENCE_FILE in files
    assert not any(data.startswith(b"\x80") for data in files.values())  # no pickle
    loaded = TABULAR.load(files, num_threads=1)
    np.testing.assert_array_equal(
        loaded.predict_scores(frame.head(50)), built.model.predict_scores(frame.head(50))
    )
    back = MonitoringReference.from_bytes(files[REFERENCE_FILE], where="test")
    assert back.to_bytes() == files[REFERENCE_FILE]
    assert back.rows == len(TABULAR.holdout(built)[0])
    assert back.threshold == built.model.threshold_value
    assert back.reference.prediction is not None  # the score is monitored as well


def test_a_reference_of_another_shape_names_where_it_came_from() -> None:
    with pytest.raises(ConfigError, match="model t@3: not a monitoring reference"):
        MonitoringReference.from_bytes(b'{"format": "x"}', where="model t@3")
