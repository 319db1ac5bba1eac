"""The one-row fast path answers exactly what Booster.predict answers."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from setpoint.errors import TrainingError
from setpoint.train.fastrow import RowPredictor
from setpoint.train.heads import LightGBMHead


def _booster(objective: str, classes: int = 2) -> tuple[lgb.Booster, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(600, 6))
    x[rng.random(x.shape) < 0.1] = np.nan  # missing values take the trees' default branches
    signal = np.nan_to_num(x[:, 0]) + 0.5 * np.nan_to_num(x[:, 1])
    if objective == "regression":
        y = signal + rng.normal(scale=0.1, size=len(x))
    else:
        y = np.digitize(signal, np.quantile(signal, np.linspace(0, 1, classes + 1)[1:-1]))
    params = {"objective": objective, "verbose": -1, "num_leaves": 15}
    if objective == "multiclass":
        params["num_class"] = classes
    return lgb.train(params, lgb.Dataset(x, y), num_boost_round=30), x


@pytest.mark.parametrize(
    ("objective", "classes"), [("binary", 2), ("multiclass", 4), ("regression", 1)]
)
def test_every_row_matches_booster_predict(objective: str, classes: int) -> None:
    booster, x = _booster(objective, classes)
    fast = RowPredictor(
        booster.model_to_string(),
        n_features=x.shape[1],
        n_outputs=booster.num_model_per_iteration(),
    )
    for i in range(0, len(x), 7):
        row = x[i : i + 1]
        expected = booster.predict(row, num_threads=1)
        got = fast.predict(row)
        assert got.shape == np.shape(expected)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_the_head_uses_it_for_one_row_only_and_agrees() -> None:
    booster, x = _booster("binary")
    head = LightGBMHead(booster.model_to_string())
    one = head.predict(x[3:4], num_threads=1)
    many = head.predict(x[:10], num_threads=1)
    assert head._row is not None  # the one-row call built the fast path
    np.testing.assert_allclose(one, many[3:4], rtol=0, atol=1e-12)


def test_a_wrong_shape_is_refused_by_name() -> None:
    booster, x = _booster("binary")
    fast = RowPredictor(booster.model_to_string(), n_features=6, n_outputs=1)
    with pytest.raises(TrainingError, match="one row of 6 features; got shape"):
        fast.predict(x[:2])


def test_bad_model_text_is_a_training_error() -> None:
    with pytest.raises(TrainingError, match="LightGBM"):
        RowPredictor("not a model", n_features=3, n_outputs=1)
