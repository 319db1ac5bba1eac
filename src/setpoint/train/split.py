"""Split rows into train, validation and test slices, in time order when possible.

With a timestamp, the test slice is the latest rows (from ``split.test_from``,
or the last ``test_fraction``), the validation slice the latest
``valid_fraction`` of what remains, and training the rest. Rows sharing a
timestamp never straddle a boundary, so every training row is strictly earlier
than every validation row, which is strictly earlier than every test row. Rows
without a timestamp are left out and counted in ``Split.dropped``.

Without a timestamp the split is a seeded shuffle, and ``Split.time_aware`` says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from setpoint.config.spec import SplitSpec, Task
from setpoint.errors import SchemaError, TrainingError

__all__ = ["Split", "time_split"]

IndexArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Split:
    """Row positions (for ``df.iloc``) of each slice, ascending."""

    train: IndexArray
    valid: IndexArray
    test: IndexArray
    time_aware: bool
    timestamp: str | None = None
    dropped: int = 0
    ranges: dict[str, list[str] | None] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """A JSON-safe description: row counts and, when time-aware, time ranges."""
        return {
            "time_aware": self.time_aware,
            "timestamp": self.timestamp,
            "rows": {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)},
            "dropped_missing_timestamp": self.dropped,
            "ranges": dict(self.ranges),
        }


@dataclass(frozen=True)
class _Clock:
    """Sortable timestamps: float64, or naive datetime64 (UTC when the column had a zone)."""

    keys: npt.NDArray[Any]
    missing: npt.NDArray[np.bool_]
    zone: Any  # the column's time zone, None when naive or numeric

    @property
    def is_numeric(self) -> bool:
        return bool(self.keys.dtype.kind == "f")

    def text(self, value: Any) -> str:
        if self.is_numeric:
            return repr(float(value))
        return str(np.datetime_as_string(value, unit="s")) + ("Z" if self.zone else "")

    def boundary(self, raw: str) -> Any:
        if self.is_numeric:
            try:
                return float(raw)
            except ValueError as exc:
                raise TrainingError(f"split.test_from {raw!r} is not a number.") from exc
        try:
            moment = pd.Timestamp(raw)
        except ValueError as exc:
            raise TrainingError(f"split.test_from {raw!r} is not a date.") from exc
        if self.zone is not None:
            # A naive boundary is read in the column's zone, then compared in UTC.
            local = moment.tz_localize(self.zone) if moment.tzinfo is None else moment
            moment = local.tz_convert("UTC").tz_localize(None)
        elif moment.tzinfo is not None:
            moment = moment.tz_convert("UTC").tz_localize(None)
        return moment.to_datetime64().astype(self.keys.dtype)


def _parse_dates(values: pd.Series, column: str) -> pd.Series:
    """Text to UTC datetimes: ISO 8601 first, then per-value parsing.

    Naming the format avoids pandas' guess (and its warning); utc=True makes
    mixed offsets comparable and reads naive text as UTC.
    """
    try:
        return pd.to_datetime(values, utc=True, format="ISO8601")
    except (ValueError, TypeError):
        pass
    try:
        return pd.to_datetime(values, utc=True, format="mixed")
    except (ValueError, TypeError) as exc:
        raise TrainingError(
            f"The timestamp column {column!r} cannot be read as dates: {exc}", column=column
        ) from exc


def _clock(df: pd.DataFrame, column: str) -> _Clock:
    if column not in df.columns:
        raise SchemaError(f"The timestamp column {column!r} is not in the data.", column=column)
    values = df[column]
    missing = values.isna().to_numpy()
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return _Clock(values.to_numpy(dtype=np.float64, na_value=np.nan), missing, None)
    if not pd.api.types.is_datetime64_any_dtype(values):
        values = _parse_dates(values, column)
    zone = values.dt.tz
    naive = values.dt.tz_convert(None) if zone is not None else values
    return _Clock(naive.to_numpy(), missing, zone)


def _tie_safe(sorted_keys: npt.NDArray[Any], position: int) -> int:
    """Move a cut left to the first row of its timestamp, so ties stay on one side."""
    if position <= 0 or position >= len(sorted_keys):
        return max(0, min(position, len(sorted_keys)))
    return int(np.searchsorted(sorted_keys, sorted_keys[position], side="left"))


def _check(
    df: pd.DataFrame, result: Split, spec: SplitSpec, target: str | None, task: Any
) -> Split:
    rows = result.summary()["rows"]
    needed = ["train", "valid"]
    if spec.test_fraction > 0 or spec.test_from is not None:
        needed.append("test")  # an empty test slice is only fine when asked for
    for name in needed:
        if rows[name] == 0:
            raise TrainingError(
                f"The {name} slice is empty (rows per slice: {rows}); "
                "use more rows, other fractions or another split.test_from."
            )
    if target is not None and task == Task.BINARY:
        classes = df[target].iloc[result.valid].dropna().unique()
        if len(classes) < 2:
            raise TrainingError(
                f"The validation slice has only one class of {target!r} ({list(classes)}); "
                "calibration and threshold choice need both. Use a larger valid_fraction "
                "or more data.",
                column=target,
            )
    return result


def time_split(
    df: pd.DataFrame,
    *,
    timestamp: str | None,
    split: SplitSpec,
    target: str | None = None,
    task: Task | None = None,
    seed: int = 0,
) -> Split:
    """Split ``df``; give ``target`` and ``task`` to check the validation classes.

    >>> frame = pd.DataFrame({"t": pd.date_range("2024-01-01", periods=10, freq="D")})
    >>> s = time_split(frame, timestamp="t",
    ...                split=SplitSpec(valid_fraction=0.25, test_fraction=0.2))
    >>> s.train.tolist(), s.valid.tolist(), s.test.tolist()
    ([0, 1, 2, 3, 4, 5], [6, 7], [8, 9])
    >>> s.ranges["test"]
    ['2024-01-09T00:00:00', '2024-01-10T00:00:00']
    """
    n_rows = len(df)
    if timestamp is None:
        order = np.random.default_rng(seed).permutation(n_rows).astype(np.int64)
        n_test = round(split.test_fraction * n_rows)
        n_valid = round(split.valid_fraction * (n_rows - n_test))
        first_test, first_valid = n_rows - n_test, n_rows - n_test - n_valid
        result = Split(
            np.sort(order[:first_valid]),
            np.sort(order[first_valid:first_test]),
            np.sort(order[first_test:]),
            time_aware=False,
        )
        return _check(df, result, split, target, task)

    clock = _clock(df, timestamp)
    known = np.flatnonzero(~clock.missing).astype(np.int64)
    # A stable sort keeps equal timestamps in row order, so the result is reproducible.
    ordered = known[np.argsort(clock.keys[known], kind="stable")]
    keys = clock.keys[ordered]
    if split.test_from is not None:
        cut = int(np.searchsorted(keys, clock.boundary(split.test_from), side="left"))
    else:
        cut = _tie_safe(keys, len(keys) - round(split.test_fraction * len(keys)))
    valid_cut = _tie_safe(keys, cut - round(split.valid_fraction * cut))
    slices = {"train": (0, valid_cut), "valid": (valid_cut, cut), "test": (cut, len(keys))}
    ranges = {
        name: [clock.text(keys[lo]), clock.text(keys[hi - 1])] if hi > lo else None
        for name, (lo, hi) in slices.items()
    }
    result = Split(
        np.sort(ordered[:valid_cut]),
        np.sort(ordered[valid_cut:cut]),
        np.sort(ordered[cut:]),
        time_aware=True,
        timestamp=timestamp,
        dropped=n_rows - len(known),
        ranges=ranges,
    )
    return _check(df, result, split, target, task)
