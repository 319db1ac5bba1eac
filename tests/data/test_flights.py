"""The real NYC 2013 weather data: a January schema validates February."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from setpoint.config.spec import ProjectSpec, ValidationPolicy
from setpoint.data.asof import asof_join
from setpoint.data.schema import infer_schema
from setpoint.data.sources import read_source
from setpoint.data.validate import AnomalyKind, validate_batch


def test_january_schema_accepts_february(
    weather: pd.DataFrame, tmp_path: Path, make_spec: Callable[..., ProjectSpec]
) -> None:
    january = tmp_path / "january.csv"
    february = tmp_path / "february.parquet"
    weather[weather["month"] == 1].to_csv(january, index=False)
    weather[weather["month"] == 2].to_parquet(february)
    spec = make_spec(
        target="temp",
        timestamp="time_hour",
        entity="rownames",
        segments=["origin"],
        # January alone says month is always 1; the spec knows better.
        features={"month": {"min": 1, "max": 12}},
    )
    schema = infer_schema(read_source(january), spec=spec)
    assert schema.column("origin").categories == ("EWR", "JFK", "LGA")
    assert schema.column("time_hour").kind == "datetime"
    assert schema.column("wind_gust").nullable

    report = validate_batch(read_source(february), schema, policy=ValidationPolicy(range_slack=0.1))
    assert not report.refused, report.summary()
    assert report.n_rows == 2010
    assert report.n_bad <= 5, report.summary()
    # nycflights13 has one famous bad reading: a 1048 mph wind on 2013-02-12.
    flagged = {(a.kind, a.column) for reasons in report.reasons for a in reasons}
    assert (AnomalyKind.OUT_OF_RANGE, "wind_speed") in flagged
    assert report.clean["wind_speed"].max() < 100
    assert str(report.clean["time_hour"].dtype) == "datetime64[us, UTC]"


def test_point_in_time_weather_for_departures(weather: pd.DataFrame) -> None:
    hourly = weather.assign(time_hour=pd.to_datetime(weather["time_hour"], utc=True))
    departures = hourly.sample(500, random_state=0)[["origin", "time_hour"]].rename(
        columns={"time_hour": "dep"}
    )
    departures["dep"] = departures["dep"] + pd.Timedelta(minutes=37)
    out = asof_join(
        departures,
        hourly[["origin", "time_hour", "temp"]],
        by="origin",
        event_time="dep",
        feature_time="time_hour",
        tolerance=pd.Timedelta(hours=1),
    )
    assert out.index.equals(departures.index)
    assert (out["dep"] - out["time_hour"] == pd.Timedelta(minutes=37)).all()
