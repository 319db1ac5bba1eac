"""Column statistics behind :func:`~setpoint.data.schema.infer_schema`."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from setpoint.data._coerce import (
    DATETIME_UNIT,
    Kind,
    as_boolean,
    as_datetime,
    as_numeric,
    as_text,
    datetime_tz,
    null_tokens,
)
from setpoint.errors import SchemaError

__all__ = ["Inferred", "check_timestamp", "convert", "describe", "infer_kind"]
# Up to this many distinct values a text column is always categorical (if the
# policy allows that many); beyond it, values must repeat on average at least
# twice, otherwise the column looks like free text or an identifier.
_ALWAYS_CATEGORICAL = 20
# A text column is numeric when this share of its values parse as numbers: a
# few stray strings ("n/a", "abc") must not turn a number column into text,
# they are what validation reports as type mismatches.
_NUMERIC_SHARE = 0.95
# Likewise the timestamp column must mostly parse; its bad values are then
# reported row by row as unparseable timestamps.
_DATETIME_SHARE = 0.5
# Below the numeric share but above this one, a text column is most likely a
# number column with bad values: inference says so in a note.
_MOSTLY_NUMERIC_SHARE = 0.5


class Inferred(NamedTuple):
    """A column's inferred kind and, when the guess deserves a human look, why.

    The only note so far is for a column that is mostly numbers: the fix is
    a ``type: numeric`` override, which the caller, knowing the name, words.
    """

    kind: Kind
    note: str | None = None


def infer_kind(series: pd.Series, *, max_categories: int, is_entity: bool) -> Inferred:
    """The kind of a column whose spec says nothing about it."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return Inferred("boolean")
    if pd.api.types.is_numeric_dtype(dtype):
        return Inferred("numeric")
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return Inferred("datetime")
    if pd.api.types.is_timedelta64_dtype(dtype):
        return Inferred("text")
    values = series[series.notna().to_numpy(dtype=bool)]
    if len(values) == 0:
        return Inferred("text")
    if values.dtype == object and values.map(lambda v: isinstance(v, bool | np.bool_)).all():
        return Inferred("boolean")
    numbers = as_numeric(values)
    parsed = numbers.notna().to_numpy(dtype=bool)
    blank = null_tokens(values, ~parsed)
    # Blank strings in a frame built by hand are missing values, not text.
    present = len(values) - int(blank.sum())
    if parsed.any() and parsed.sum() >= _NUMERIC_SHARE * present:
        if is_entity and not _exact_integers(values, numbers):
            # As numbers, "007" would become 7 and a 30-digit id a float that
            # collides with its neighbours: such ids stay text.
            return Inferred("text")
        return Inferred("numeric")
    if is_entity:
        return Inferred("text")
    distinct = as_text(values).nunique()
    limit = min(max_categories, max(_ALWAYS_CATEGORICAL, len(values) // 2))
    kind: Kind = "categorical" if distinct <= limit else "text"
    share = parsed.sum() / present if present else 0.0
    if share < _MOSTLY_NUMERIC_SHARE:
        return Inferred(kind)
    example = values[~parsed & ~blank].iloc[0]
    return Inferred(
        kind,
        f"{share:.0%} of its values are numbers, but others are not (e.g. {example!r}), so it "
        f"was inferred as {kind}" + (", which is not trained on" if kind == "text" else ""),
    )


def _exact_integers(text: pd.Series, numbers: pd.Series) -> bool:
    """Whether ``numbers`` are int64 and print back as exactly the ``text`` they came from."""
    if not pd.api.types.is_integer_dtype(numbers.dtype):
        return False
    if not (pd.api.types.is_string_dtype(text.dtype) or text.dtype == object):
        return True
    written = text.astype("str").str.strip()
    return bool((numbers.astype("str") == written).all())


def _null_mask(series: pd.Series, kind: Kind, converted: pd.Series) -> np.ndarray:
    nulls = series.isna().to_numpy(dtype=bool)
    if kind in ("numeric", "boolean", "datetime"):
        nulls = nulls | null_tokens(series, ~nulls & converted.isna().to_numpy(dtype=bool))
    return nulls


def describe(series: pd.Series, kind: Kind, *, is_entity: bool) -> dict[str, Any]:
    """The fields of a ColumnSchema of ``series`` read as ``kind`` (all but its name)."""
    converted = convert(series, kind)
    nulls = _null_mask(series, kind, converted)
    n = len(series)
    null_rate = float(nulls.sum() / n) if n else 0.0
    nullable = bool(nulls.any())
    present = converted[~nulls & converted.notna().to_numpy(dtype=bool)]
    unique = bool(present.is_unique)
    low = high = None
    categories = None
    dtype = "str"
    if kind == "numeric":
        values = present.to_numpy(dtype="float64")
        finite = values[np.isfinite(values)]
        if len(finite) and not is_entity:
            low, high = float(finite.min()), float(finite.max())
        integer = pd.api.types.is_integer_dtype(converted.dtype)
        dtype = "int64" if integer and not nullable else "float64"
    elif kind == "boolean":
        dtype = "boolean" if nullable else "bool"
    elif kind == "datetime":
        tz = datetime_tz(series) if n else None
        dtype = f"datetime64[{DATETIME_UNIT}, {tz}]" if tz else f"datetime64[{DATETIME_UNIT}]"
    elif kind == "categorical":
        categories = tuple(sorted(set(present.tolist())))
    return {
        "kind": kind,
        "dtype": dtype,
        "nullable": nullable,
        "null_rate": null_rate,
        "min": low,
        "max": high,
        "categories": categories,
        "unique": unique,
    }


def convert(series: pd.Series, kind: Kind) -> pd.Series:
    """``series`` converted to ``kind``; what does not convert is missing."""
    if kind == "numeric":
        return as_numeric(series)
    if kind == "boolean":
        return as_boolean(series)
    if kind == "datetime":
        return as_datetime(series, tz=datetime_tz(series) if len(series) else None)
    return as_text(series)


def check_timestamp(name: str, series: pd.Series) -> None:
    """Raise a SchemaError unless ``series`` holds datetimes or mostly ISO 8601 text."""
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return
    if pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
        raise SchemaError(
            f"The timestamp column {name!r} holds {series.dtype} values, not date-times. "
            "Store timestamps as ISO 8601 text like '2024-03-01T10:00:00Z' or as datetimes.",
            column=name,
        )
    values = series[series.notna().to_numpy(dtype=bool)]
    parsed = as_datetime(values, tz="UTC")
    if len(values) == 0 or parsed.notna().mean() < _DATETIME_SHARE:
        failed = values[parsed.isna().to_numpy(dtype=bool)]
        example = f", e.g. {failed.iloc[0]!r}" if len(failed) else " (it is empty)"
        raise SchemaError(
            f"The timestamp column {name!r} is not ISO 8601 date-time text{example}. "
            "Write timestamps like '2024-03-01T10:00:00Z'.",
            column=name,
        )
