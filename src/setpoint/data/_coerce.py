"""Vectorized conversion of raw columns to the kinds of a schema.

Shared by schema inference and batch validation so that both read a value
the same way. Every function returns a converted Series (same index, NaN/NaT
/NA where the value is missing or does not convert) and never raises on bad
values: judging them is the caller's job.
"""

from __future__ import annotations

import contextlib
import datetime
import warnings
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "DATETIME_UNIT",
    "NULL_TOKENS",
    "Kind",
    "as_boolean",
    "as_datetime",
    "as_numeric",
    "as_text",
    "datetime_tz",
    "null_tokens",
    "plain",
]

Kind = Literal["numeric", "categorical", "boolean", "datetime", "text"]

# Microseconds rather than pandas' historical nanoseconds: the range
# (years -290,000 to 294,000) holds every date a user will type, and it is
# what pandas 3 gives when it parses strings.
DATETIME_UNIT = "us"

NULL_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "<na>", "nat", "#n/a", "-nan"})

_TRUE = frozenset({"true", "t", "yes", "y", "1", "1.0"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "0.0"})


def plain(series: pd.Series) -> pd.Series:
    """Undo pandas' ``category`` dtype, which only changes how values are stored."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        return series.astype(series.cat.categories.dtype)
    return series


def null_tokens(series: pd.Series, candidates: np.ndarray) -> np.ndarray:
    """Mark the ``candidates`` that are strings spelling a missing value ("", "NA", ...).

    >>> s = pd.Series(["1", " ", "NA", "abc"])
    >>> null_tokens(s, np.array([False, True, True, True])).tolist()
    [False, True, True, False]
    """
    found = np.zeros(len(series), dtype=bool)
    if not candidates.any():
        return found
    values = series[candidates]
    text = values.map(lambda v: v.strip().lower() if isinstance(v, str) else None)
    found[np.flatnonzero(candidates)] = text.isin(NULL_TOKENS).to_numpy(dtype=bool)
    return found


def as_numeric(series: pd.Series) -> pd.Series:
    """Convert to int64 or float64; what does not convert becomes NaN.

    >>> as_numeric(pd.Series(["1.5", "x", None, "inf"])).tolist()
    [1.5, nan, nan, inf]
    """
    series = plain(series)
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return series.astype("float64")
    if pd.api.types.is_numeric_dtype(dtype):
        if isinstance(dtype, np.dtype) and dtype.kind in "iuf":
            if dtype.kind == "u" and dtype.itemsize == 8:
                return series.astype("float64")
            return series
        # Masked and Arrow-backed numbers: NaN is the missing value downstream.
        return series.astype("float64")
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        return pd.Series(np.nan, index=series.index, dtype="float64")
    fast = _arrow_numbers(series)
    if fast is not None:
        return fast
    try:
        result = pd.to_numeric(series, errors="coerce")
    except (TypeError, ValueError):
        result = pd.to_numeric(series.astype("str"), errors="coerce")
    if result.dtype == object:
        # Python ints beyond 64 bits come back as objects.
        result = pd.to_numeric(result.astype("str"), errors="coerce")
    return result.astype("float64") if result.dtype.kind not in "if" else result


def _arrow_numbers(series: pd.Series) -> pd.Series | None:
    """Arrow's cast, ten times faster than pandas' parser, when every string is a number."""
    try:
        strings = pa.array(series.array, from_pandas=True)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        return None  # objects other than strings: pandas sorts them out
    if not (pa.types.is_string(strings.type) or pa.types.is_large_string(strings.type)):
        return None
    try:
        values = pc.cast(strings, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None  # a value does not parse: pandas' parser marks which
    finite = values[np.isfinite(values)]
    if len(finite) == len(values) and np.all(finite == np.floor(finite)):
        # Whole numbers without gaps: int64 like pandas, if the text agrees.
        with contextlib.suppress(pa.ArrowInvalid):
            values = pc.cast(strings, pa.int64()).to_numpy(zero_copy_only=False)
    return pd.Series(values, index=series.index)


def as_boolean(series: pd.Series) -> pd.Series:
    """Convert to pandas' nullable ``boolean``; unknown spellings become NA.

    >>> as_boolean(pd.Series(["yes", "False", 1, None, "maybe"])).tolist()
    [True, False, True, <NA>, <NA>]
    """
    series = plain(series)
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.astype("boolean")
    if pd.api.types.is_numeric_dtype(series.dtype):
        numbers = series.astype("float64")
        out = pd.Series(pd.NA, index=series.index, dtype="boolean")
        out[numbers == 1] = True
        out[numbers == 0] = False
        return out

    def one(value: Any) -> bool | None:
        if isinstance(value, bool | np.bool_):
            return bool(value)
        key = str(value).strip().lower()
        if key in _TRUE:
            return True
        if key in _FALSE:
            return False
        return None

    notna = series.notna().to_numpy(dtype=bool)
    out = pd.Series(pd.NA, index=series.index, dtype="boolean")
    if notna.any():
        # Few distinct spellings: convert each once, then map.
        uniques = pd.unique(series[notna].astype("object"))
        lookup = {u: one(u) for u in uniques}
        out[notna] = series[notna].astype("object").map(lookup).astype("boolean").to_numpy()
    return out


def as_datetime(series: pd.Series, *, tz: str | None) -> pd.Series:
    """Parse ISO 8601 text (or take datetimes) into ``datetime64[us]`` with timezone ``tz``.

    Aware values are converted to ``tz``; when ``tz`` is None they are
    converted to UTC and the zone dropped. Naive values under an aware ``tz``
    are taken to be in that zone.

    >>> as_datetime(pd.Series(["2024-03-01T10:00:00+01:00", "x"]), tz="UTC").tolist()
    [Timestamp('2024-03-01 09:00:00+0000', tz='UTC'), NaT]
    """
    series = plain(series)
    if not pd.api.types.is_datetime64_any_dtype(series.dtype):
        series = _parse_datetime(series)
    current = getattr(series.dt, "tz", None)
    if current is None and tz is not None:
        series = series.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    elif current is not None and tz is None:
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    elif current is not None and tz is not None and str(current) != tz:
        series = series.dt.tz_convert(tz)
    try:
        result: pd.Series = series.dt.as_unit(DATETIME_UNIT)
    except (OverflowError, ValueError):
        # Second-resolution dates beyond year 294,000: keep their own unit.
        return series
    return result


def datetime_tz(series: pd.Series) -> str | None:
    """The timezone a column's timestamps are in once parsed, or None if naive."""
    series = plain(series)
    if not pd.api.types.is_datetime64_any_dtype(series.dtype):
        series = _parse_datetime(series)
    tz = getattr(series.dt, "tz", None)
    return None if tz is None else str(tz)


def _parse_datetime(series: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
        # Epoch numbers are ambiguous (seconds? milliseconds?): not timestamps.
        return pd.Series(pd.NaT, index=series.index, dtype=f"datetime64[{DATETIME_UNIT}]")
    if isinstance(series.dtype, pd.StringDtype):
        text = series
    else:
        # Numbers inside an object column would be read as epoch nanoseconds.
        text = series.astype("object").where(series.map(_is_datetime_like), None)
    # pandas reads these two words as the current time: not data.
    text = text.where(~text.isin(("now", "today")), None)
    with warnings.catch_warnings():
        # Out-of-bounds years and the like become NaT; pandas says so loudly.
        warnings.simplefilter("ignore")
        try:
            parsed = pd.to_datetime(text, format="ISO8601", errors="coerce")
        except (ValueError, TypeError):
            # Mixed offsets, or naive mixed with aware: one common zone.
            parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
    if not pd.api.types.is_datetime64_any_dtype(parsed.dtype):
        parsed = pd.Series(pd.NaT, index=series.index, dtype=f"datetime64[{DATETIME_UNIT}]")
    tz = getattr(parsed.dt, "tz", None)
    if tz is not None and str(tz) != "UTC":
        # A fixed offset parsed from text ("+01:00") is not a zone: use UTC.
        parsed = parsed.dt.tz_convert("UTC")
    return parsed


def _is_datetime_like(value: Any) -> bool:
    return isinstance(value, str | datetime.date | np.datetime64)


def as_text(series: pd.Series) -> pd.Series:
    """Convert to pandas' ``str`` dtype; whole floats print without ".0".

    >>> as_text(pd.Series([1.0, 2.5, None])).tolist()
    ['1', '2.5', nan]
    """
    series = plain(series)
    if isinstance(series.dtype, pd.StringDtype):
        return series.astype("str")
    if pd.api.types.is_float_dtype(series.dtype):
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        finite = np.isfinite(values)
        whole = finite & (np.abs(values) < 2**63)
        whole[whole] = values[whole] == np.floor(values[whole])
        if whole.sum() == (~np.isnan(values)).sum():
            return series.astype("Int64").astype("str")
        out = series.astype("str")
        out[whole] = series[whole].astype("int64").astype("str")
        return out
    return series.astype("str")
