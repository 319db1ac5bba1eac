"""Reading columns from a frame (pandas, or a dict of arrays) without copying where possible.

Both the reference summary and the drift report read a column the same way, so
that a value counts as missing, or as the same category, on both sides alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd

from setpoint.errors import InvalidParameterError, SchemaError

__all__ = ["Frame", "Label", "column", "label_counts", "numeric_values", "plain_label", "row_count"]

Frame: TypeAlias = pd.DataFrame | Mapping[str, Any]
Label: TypeAlias = str | int | float | bool
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def row_count(frame: Frame, *, owner: str, parameter: str) -> int:
    """Rows of ``frame``; every array of a dict must have the same length."""
    if isinstance(frame, pd.DataFrame):
        return len(frame)
    if not isinstance(frame, Mapping):
        raise InvalidParameterError(
            owner=owner,
            parameter=parameter,
            expected="a pandas DataFrame or a dict of 1-D arrays",
            got=type(frame).__name__,
        )
    lengths = {name: len(values) for name, values in frame.items()}
    if len(set(lengths.values())) > 1:
        raise InvalidParameterError(
            owner=owner,
            parameter=parameter,
            expected="arrays of one length",
            got=lengths,
        )
    return next(iter(lengths.values()), 0)


def column(frame: Frame, name: str, *, side: str) -> Any:
    """The column ``name``; a frame without it is a schema error naming the column."""
    if name not in frame:
        raise SchemaError(f"The {side} has no column {name!r}.", column=name)
    return frame[name]


def numeric_values(values: Any, *, name: str, side: str) -> FloatArray:
    """The column as float64, with NaN for missing values (None, NA, NaN)."""
    if isinstance(values, pd.Series):
        if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
            raise SchemaError(
                f"Column {name!r} of the {side} must be numeric; its dtype is {values.dtype}.",
                column=name,
            )
        if values.dtype == np.float64:
            return np.asarray(values.to_numpy(), dtype=np.float64)  # no copy
        return np.asarray(values.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    array = np.asarray(values)
    if array.ndim != 1 or array.dtype.kind not in "biuf":
        raise SchemaError(
            f"Column {name!r} of the {side} must be a 1-D numeric array; "
            f"got dtype {array.dtype} with shape {array.shape}.",
            column=name,
        )
    return np.asarray(array, dtype=np.float64)


def plain_label(value: Any) -> Label:
    """A JSON scalar for a category: numpy scalars unwrapped, anything else as text."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str | bool | int | float):
        return value
    return str(value)


def label_counts(values: Any) -> tuple[list[Label], IntArray, int]:
    """Distinct non-missing labels, their counts and the number of missing values.

    A hash pass over the column (Arrow's for Arrow-backed strings), so a million
    rows take milliseconds; no Python loop runs per row.
    """
    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values))
    missing = int(series.isna().sum())
    counted = series.value_counts(dropna=True, sort=False)
    counts = counted.to_numpy(dtype=np.int64)
    keep = counts > 0  # a Categorical reports its unused categories with 0
    labels = [plain_label(v) for v, k in zip(counted.index, keep, strict=True) if k]
    return labels, np.asarray(counts[keep], dtype=np.int64), missing
