"""Point-in-time joins: give each event the feature values known at its time.

Joining features to training events by key alone leaks the future: a feature
row written after the event would be used to predict it. :func:`asof_join`
picks, for each event, the latest feature row of the same key whose time is
not after the event's, and never a later one.
"""

from __future__ import annotations

import datetime
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.extensions import take

from setpoint.data.schema import close_matches
from setpoint.errors import InvalidParameterError, SchemaError

__all__ = ["asof_join"]

_UNITS = ("s", "ms", "us", "ns")
_POS = "__setpoint_event_pos"
_RPOS = "__setpoint_feature_pos"
_TIME = "__setpoint_time"


def asof_join(
    events: pd.DataFrame,
    features: pd.DataFrame,
    *,
    by: str | list[str],
    event_time: str,
    feature_time: str,
    tolerance: pd.Timedelta | None = None,
    suffix: str = "_feat",
    allow_exact_matches: bool = True,
) -> pd.DataFrame:
    """Left-join to each event the latest feature row of its key at or before its time.

    The result has the rows of ``events`` in their order, with their index,
    followed by the columns of ``features`` other than ``by`` (``feature_time``
    included, so the match can be audited). A feature column whose name is
    already an event column gets ``suffix``. An event without a match (no
    earlier feature row, one older than ``tolerance``, or a null key or time)
    gets nulls. With ``allow_exact_matches=False`` a feature row must be
    strictly earlier than the event. Among feature rows with the same key and
    time, the last one in ``features`` wins.

    Both time columns must be datetimes; timezone-aware times are compared in
    the events' zone, and aware against naive is a :class:`SchemaError`.

    >>> events = pd.DataFrame({"user": [1, 1, 2],
    ...                        "t": pd.to_datetime(["2024-01-02", "2024-01-05", "2024-01-03"])})
    >>> feats = pd.DataFrame({"user": [1, 1, 2],
    ...                       "t": pd.to_datetime(["2024-01-01", "2024-01-04", "2024-01-09"]),
    ...                       "spend": [10.0, 20.0, 99.0]})
    >>> asof_join(events, feats, by="user", event_time="t", feature_time="t")
       user          t     t_feat  spend
    0     1 2024-01-02 2024-01-01   10.0
    1     1 2024-01-05 2024-01-04   20.0
    2     2 2024-01-03        NaT    NaN
    """
    keys = _check_arguments(
        events, features, by, event_time, feature_time, tolerance, suffix, allow_exact_matches
    )
    left_time, right_time = _aligned_times(events, features, event_time, feature_time)
    left_keys, right_keys = _aligned_keys(events, features, keys)

    values = [c for c in features.columns if c not in keys]
    renamed = {c: f"{c}{suffix}" if c in events.columns else c for c in values}
    clashes = sorted(n for n in renamed.values() if n in events.columns)
    if clashes:
        raise SchemaError(
            f"asof_join: the feature columns would be named {clashes}, which the events already "
            "have; choose another 'suffix'.",
            column=clashes[0],
        )

    left = pd.DataFrame({_POS: np.arange(len(events)), _TIME: left_time, **left_keys})
    right = pd.DataFrame({_RPOS: np.arange(len(features)), _TIME: right_time, **right_keys})
    left = left[left[[_TIME, *keys]].notna().all(axis=1)]
    right = right[right[[_TIME, *keys]].notna().all(axis=1)]
    found = np.full(len(events), -1, dtype=np.int64)
    if len(left) and len(right):
        # Stable sorts: equal feature times stay in input order, and
        # merge_asof takes the last of them.
        merged = pd.merge_asof(
            left.sort_values(_TIME, kind="stable"),
            right.sort_values(_TIME, kind="stable"),
            on=_TIME,
            by=keys,
            tolerance=None if tolerance is None else pd.Timedelta(tolerance),
            allow_exact_matches=allow_exact_matches,
            direction="backward",
        )
        hit = merged[_RPOS].notna().to_numpy(dtype=bool)
        found[merged[_POS].to_numpy()[hit]] = merged[_RPOS].to_numpy()[hit].astype(np.int64)

    added = {renamed[c]: take(_values(features[c]), found, allow_fill=True) for c in values}
    result = pd.concat([events.reset_index(drop=True), pd.DataFrame(added)], axis=1)
    result.index = events.index
    return result


def _check_arguments(
    events: Any,
    features: Any,
    by: Any,
    event_time: Any,
    feature_time: Any,
    tolerance: Any,
    suffix: Any,
    allow_exact_matches: Any,
) -> list[str]:
    for parameter, frame in (("events", events), ("features", features)):
        if not isinstance(frame, pd.DataFrame):
            raise InvalidParameterError(
                owner="asof_join",
                parameter=parameter,
                expected="a pandas DataFrame",
                got=type(frame).__name__,
            )
    keys = [by] if isinstance(by, str) else by
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
        raise InvalidParameterError(
            owner="asof_join",
            parameter="by",
            expected="a column name or a non-empty list of them",
            got=by,
        )
    for parameter, value in (("event_time", event_time), ("feature_time", feature_time)):
        if not isinstance(value, str):
            raise InvalidParameterError(
                owner="asof_join", parameter=parameter, expected="a column name", got=value
            )
    if tolerance is not None and (
        not isinstance(tolerance, datetime.timedelta)
        or pd.isna(tolerance)
        or pd.Timedelta(tolerance) < pd.Timedelta(0)
    ):
        raise InvalidParameterError(
            owner="asof_join",
            parameter="tolerance",
            expected="a non-negative pd.Timedelta or None",
            got=tolerance,
        )
    if not isinstance(suffix, str) or not suffix:
        raise InvalidParameterError(
            owner="asof_join", parameter="suffix", expected="a non-empty str", got=suffix
        )
    if not isinstance(allow_exact_matches, bool):
        raise InvalidParameterError(
            owner="asof_join",
            parameter="allow_exact_matches",
            expected="a bool",
            got=allow_exact_matches,
        )
    for frame_name, frame, needed in (
        ("events", events, [*keys, event_time]),
        ("features", features, [*keys, feature_time]),
    ):
        columns = [str(c) for c in frame.columns]
        if len(set(columns)) != len(columns):
            duplicated = sorted({c for c in columns if columns.count(c) > 1})
            raise SchemaError(
                f"asof_join: {frame_name} has duplicate columns {duplicated}.", column=duplicated[0]
            )
        for name in needed:
            if name not in frame.columns:
                hint = close_matches(name, columns)
                raise SchemaError(
                    f"asof_join: {frame_name} has no column {name!r}{hint}.", column=name
                )
    return list(keys)


def _aligned_times(
    events: pd.DataFrame, features: pd.DataFrame, event_time: str, feature_time: str
) -> tuple[pd.Series, pd.Series]:
    left = _datetimes(events, "events", event_time)
    right = _datetimes(features, "features", feature_time)
    left_tz = getattr(left.dt, "tz", None)
    right_tz = getattr(right.dt, "tz", None)
    if (left_tz is None) != (right_tz is None):
        aware, naive = (
            (f"events[{event_time!r}]", f"features[{feature_time!r}]")
            if left_tz is not None
            else (f"features[{feature_time!r}]", f"events[{event_time!r}]")
        )
        raise SchemaError(
            f"asof_join: {aware} is timezone-aware but {naive} is naive; localize the naive one "
            "(Series.dt.tz_localize) so that both are in a known zone.",
            column=event_time if left_tz is None else feature_time,
        )
    if right_tz is not None and str(right_tz) != str(left_tz):
        right = right.dt.tz_convert(left_tz)
    unit = max(_unit(left), _unit(right), key=_UNITS.index)
    return (
        left.dt.as_unit(unit).reset_index(drop=True),
        right.dt.as_unit(unit).reset_index(drop=True),
    )


def _datetimes(frame: pd.DataFrame, frame_name: str, column: str) -> pd.Series:
    series = frame[column]
    if not pd.api.types.is_datetime64_any_dtype(series.dtype):
        raise SchemaError(
            f"asof_join: {frame_name}[{column!r}] has dtype {series.dtype}, not datetime; "
            "convert it with pd.to_datetime first.",
            column=column,
        )
    return series


def _unit(series: pd.Series) -> str:
    return str(series.dt.unit)


def _values(series: pd.Series) -> Any:
    # A numpy array lets take() upcast ints to float to hold the NaN of a
    # missed match; extension arrays have their own missing value.
    return series.to_numpy() if isinstance(series.dtype, np.dtype) else series.array


def _aligned_keys(
    events: pd.DataFrame, features: pd.DataFrame, keys: list[str]
) -> tuple[dict[str, pd.Series], dict[str, pd.Series]]:
    left: dict[str, pd.Series] = {}
    right: dict[str, pd.Series] = {}
    for key in keys:
        a = _plain_key(events[key].reset_index(drop=True))
        b = _plain_key(features[key].reset_index(drop=True))
        if a.dtype != b.dtype:
            if _is_number(a) and _is_number(b):
                a, b = a.astype("float64"), b.astype("float64")
            elif _is_text(a) and _is_text(b):
                a, b = a.astype("str"), b.astype("str")
            else:
                raise SchemaError(
                    f"asof_join: the key {key!r} is {a.dtype} in events but {b.dtype} in "
                    "features; convert one so that both have the same type.",
                    column=key,
                )
        left[key], right[key] = a, b
    return left, right


def _plain_key(series: pd.Series) -> pd.Series:
    # merge_asof wants plain numpy keys; nulls are dropped before the merge.
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(series.cat.categories.dtype)
    if isinstance(series.dtype, pd.api.extensions.ExtensionDtype) and _is_number(series):
        return series.astype("float64")
    return series


def _is_number(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(
        series.dtype
    )


def _is_text(series: pd.Series) -> bool:
    return isinstance(series.dtype, pd.StringDtype) or (
        series.dtype == object and bool(series.dropna().map(lambda v: isinstance(v, str)).all())
    )
