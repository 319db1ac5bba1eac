"""Property-based tests: validate_batch never breaks; asof_join equals brute force."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from setpoint.config.spec import ValidationPolicy
from setpoint.data.asof import asof_join
from setpoint.data.schema import ColumnSchema, Schema
from setpoint.data.validate import validate_batch

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

SCHEMA = Schema(
    columns=(
        ColumnSchema(name="id", kind="numeric", dtype="int64", nullable=False, unique=True),
        ColumnSchema(name="x", kind="numeric", dtype="float64", nullable=True, min=0, max=10),
        ColumnSchema(name="n", kind="numeric", dtype="int64", nullable=False, min=0, max=100),
        ColumnSchema(
            name="c", kind="categorical", dtype="str", nullable=True, categories=("a", "b", "c")
        ),
        ColumnSchema(name="flag", kind="boolean", dtype="bool", nullable=False),
        ColumnSchema(name="t", kind="datetime", dtype="datetime64[us, UTC]", nullable=False),
        ColumnSchema(name="note", kind="text", dtype="str", nullable=True),
        ColumnSchema(name="y", kind="numeric", dtype="int64", nullable=False, min=0, max=1),
    ),
    target="y",
    timestamp="t",
    entity="id",
)

UTC = dt.UTC
DATETIMES = st.datetimes(
    min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2060, 1, 1), timezones=st.just(UTC)
)
ANY_VALUE = st.one_of(
    st.none(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["", "NA", "inf", "-inf", "nan", "a", "b", "true", "2024-01-01T00:00:00Z"]),
    st.booleans(),
    DATETIMES,
)


@st.composite
def arbitrary_frames(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(min_value=0, max_value=25))
    columns: dict[str, Any] = {}
    for name in SCHEMA.names:
        if draw(st.integers(0, 9)) == 0:
            continue  # a missing column now and then
        if draw(st.booleans()):
            columns[name] = pd.Series(
                draw(st.lists(ANY_VALUE, min_size=n, max_size=n)), dtype=object
            )
        else:
            floats = st.floats(allow_nan=True, allow_infinity=True)
            columns[name] = pd.Series(
                draw(st.lists(floats, min_size=n, max_size=n)), dtype="float64"
            )
    if draw(st.booleans()):
        columns["extra"] = pd.Series(
            draw(st.lists(ANY_VALUE, min_size=n, max_size=n)), dtype=object
        )
    return pd.DataFrame(columns, index=pd.RangeIndex(n) * 3 + 7)


@SETTINGS
@given(df=arbitrary_frames(), known=st.lists(ANY_VALUE, max_size=3))
def test_validate_never_raises_and_accounts_for_every_row(
    df: pd.DataFrame, known: list[Any]
) -> None:
    report = validate_batch(df, SCHEMA, policy=ValidationPolicy(), known_ids=known)
    assert report.n_rows == len(df)
    assert report.n_bad + len(report.clean) == report.n_rows
    assert len(report.bad) == len(report.reasons) == report.n_bad
    assert all(report.reasons)
    assert set(report.bad["_row"]).isdisjoint(report.clean.index)
    assert set(report.bad["_row"]) | set(report.clean.index) == set(df.index)
    assert list(report.clean.columns) == SCHEMA.names
    for col in SCHEMA.columns:
        if col.name in df.columns and not col.nullable:
            assert report.clean[col.name].notna().all()
    assert report.summary()
    assert report.to_dict()["n_rows"] == len(df)


@st.composite
def domain_frames(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(min_value=0, max_value=25))

    def column(values: st.SearchStrategy[Any]) -> list[Any]:
        return draw(st.lists(values, min_size=n, max_size=n))

    return pd.DataFrame(
        {
            "id": draw(st.lists(st.integers(-(2**62), 2**62), min_size=n, max_size=n, unique=True)),
            "x": pd.Series(column(st.none() | st.floats(0, 10)), dtype="float64"),
            "n": pd.Series(column(st.integers(0, 100)), dtype="int64"),
            "c": pd.Series(column(st.none() | st.sampled_from(["a", "b", "c"])), dtype="str"),
            "flag": pd.Series(column(st.booleans()), dtype="bool"),
            "t": pd.Series(column(DATETIMES), dtype="datetime64[us, UTC]"),
            "note": pd.Series(column(st.none() | st.text(max_size=5)), dtype="str"),
            "y": pd.Series(column(st.integers(0, 1)), dtype="int64"),
        }
    )


@SETTINGS
@given(df=domain_frames(), as_text=st.booleans())
def test_a_frame_from_the_schema_domain_has_no_anomaly(df: pd.DataFrame, as_text: bool) -> None:
    if as_text:
        # As a CSV of the same values would arrive: numbers and dates as text.
        df = df.assign(
            x=df["x"].map(repr).where(df["x"].notna(), None),
            t=df["t"].map(lambda v: v.isoformat()),
        )
    policy = ValidationPolicy(null_rate_jump=1.0)
    report = validate_batch(df, SCHEMA, policy=policy)
    assert report.n_bad == 0, report.reasons[:3]
    assert report.batch_anomalies == []
    assert len(report.clean) == len(df)
    assert report.clean["id"].tolist() == df["id"].tolist()
    assert report.clean["x"].isna().tolist() == df["x"].isna().tolist()


KEYS = st.sampled_from([0.0, 1.0, 2.0, np.nan])
MINUTES = st.one_of(st.none(), st.integers(0, 30))
BASE = pd.Timestamp("2024-01-01")


def to_times(minutes: list[int | None]) -> pd.Series:
    return pd.Series(
        [pd.NaT if m is None else BASE + pd.Timedelta(minutes=m) for m in minutes],
        dtype="datetime64[ns]",
    )


@st.composite
def joins(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timedelta | None, bool]:
    n = draw(st.integers(0, 15))
    m = draw(st.integers(0, 15))
    events = pd.DataFrame(
        {
            "k": draw(st.lists(KEYS, min_size=n, max_size=n)),
            "t": to_times(draw(st.lists(MINUTES, min_size=n, max_size=n))),
        },
        index=draw(st.permutations(list(range(n)))),
    )
    events["t"] = events["t"].to_numpy()
    features = pd.DataFrame(
        {
            "k": draw(st.lists(KEYS, min_size=m, max_size=m)),
            "ft": to_times(draw(st.lists(MINUTES, min_size=m, max_size=m))),
            "row": np.arange(m),
        }
    )
    tolerance = draw(st.none() | st.integers(0, 10).map(lambda k: pd.Timedelta(minutes=k)))
    return events, features, tolerance, draw(st.booleans())


def brute_force(
    events: pd.DataFrame, features: pd.DataFrame, tolerance: pd.Timedelta | None, exact: bool
) -> list[float]:
    picked: list[float] = []
    for key, time in zip(events["k"], events["t"], strict=True):
        best: tuple[pd.Timestamp, int] | None = None
        if not (pd.isna(key) or pd.isna(time)):
            for row, (fkey, ftime) in enumerate(zip(features["k"], features["ft"], strict=True)):
                if pd.isna(fkey) or pd.isna(ftime) or fkey != key:
                    continue
                if ftime > time or (ftime == time and not exact):
                    continue
                if tolerance is not None and time - ftime > tolerance:
                    continue
                if best is None or (ftime, row) >= best:
                    best = (ftime, row)
        picked.append(np.nan if best is None else float(best[1]))
    return picked


@SETTINGS
@given(case=joins())
def test_asof_join_equals_brute_force(
    case: tuple[pd.DataFrame, pd.DataFrame, pd.Timedelta | None, bool],
) -> None:
    events, features, tolerance, exact = case
    out = asof_join(
        events,
        features,
        by="k",
        event_time="t",
        feature_time="ft",
        tolerance=tolerance,
        allow_exact_matches=exact,
    )
    assert out.index.tolist() == events.index.tolist()
    pd.testing.assert_frame_equal(out[["k", "t"]], events)
    expected = brute_force(events, features, tolerance, exact)
    np.testing.assert_array_equal(out["row"].to_numpy(dtype=float), np.array(expected))
    matched = out["ft"].notna()
    assert (out.loc[matched, "ft"] <= out.loc[matched, "t"]).all()
