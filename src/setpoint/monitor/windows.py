"""Windows: how a window is named, and the served traffic cut into them.

A window is a length of time in the one duration syntax of the spec
(``config/durations.py``: ``30min``, ``6h``, ``1d``, ``1w``), aligned to UTC
boundaries counted from the epoch (weeks from a Monday, so they start on
Mondays), or a count of consecutive predictions (``5000rows``).

>>> parse_window("1w")
WindowSpec(text='1w', period=datetime.timedelta(days=7), rows=None)
>>> parse_window("5000rows").rows
5000
>>> parse_window("30min").period
datetime.timedelta(seconds=1800)
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
import pandas as pd

from setpoint.config.durations import DURATION_HELP, parse_duration
from setpoint.errors import ConfigError

__all__ = ["WINDOW_HELP", "Window", "WindowSpec", "cut_windows", "parse_window"]

WINDOW_HELP = f"{DURATION_HELP} (a length of time) or a count of predictions (5000rows)"
_ROWS = re.compile(r"\s*(\d+)\s*rows?\s*", re.IGNORECASE)
_WEEK_US = 7 * 86_400_000_000
# 1970-01-05 was a Monday: whole weeks are counted from there, the rest from the epoch.
_MONDAY_US = 4 * 86_400_000_000


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """A length of time (``period``) or a count of predictions (``rows``): exactly one is set."""

    text: str
    period: timedelta | None
    rows: int | None


@dataclass(frozen=True, slots=True)
class Window:
    """Rows ``positions`` of the traffic; ``start <= time < end`` for a time window.

    A count window's ``start`` and ``end`` are its first and last prediction's time.
    """

    start: datetime
    end: datetime
    positions: npt.NDArray[np.intp]


def parse_window(text: str) -> WindowSpec:
    """The window ``text`` names; ``ConfigError`` naming the accepted forms otherwise."""
    if not isinstance(text, str):
        raise ConfigError(f"The window {text!r} is not {WINDOW_HELP}.", window=text)
    match = _ROWS.fullmatch(text)
    if match is not None:
        rows = int(match.group(1))
        if rows < 1:
            raise ConfigError(f"The window {text!r} is not {WINDOW_HELP}.", window=text)
        return WindowSpec(text=text.strip(), period=None, rows=rows)
    try:
        period = parse_duration(text)
    except ValueError:
        raise ConfigError(f"The window {text!r} is not {WINDOW_HELP}.", window=text) from None
    whole_us = period // timedelta(microseconds=1)
    if period < timedelta(seconds=1) or period != timedelta(microseconds=whole_us):
        raise ConfigError(
            f"The window {text!r} is shorter than a second or not a whole number of "
            f"microseconds; it must be {WINDOW_HELP}.",
            window=text,
        )
    return WindowSpec(text=text.strip(), period=period, rows=None)


def _micros(times: pd.Series) -> npt.NDArray[np.int64]:
    utc = pd.to_datetime(times, utc=True).dt.as_unit("us")
    return np.asarray(utc.astype("int64"), dtype=np.int64)


def _datetime(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1_000_000, tz=UTC)


def cut_windows(times: pd.Series, spec: WindowSpec) -> list[Window]:
    """Non-empty windows over ``times`` (sorted, oldest first), in time order."""
    micros = _micros(times)
    if micros.size == 0:
        return []
    if spec.rows is not None:
        size = spec.rows
        return [
            Window(
                start=_datetime(int(micros[lo])),
                end=_datetime(int(micros[min(lo + size, micros.size) - 1])),
                positions=np.arange(lo, min(lo + size, micros.size), dtype=np.intp),
            )
            for lo in range(0, micros.size, size)
        ]
    if spec.period is None:
        raise ConfigError(f"The window {spec.text!r} has neither a length nor a count.")
    period = spec.period // timedelta(microseconds=1)
    origin = _MONDAY_US if period % _WEEK_US == 0 else 0
    buckets = (micros - origin) // period
    # times are sorted, so each bucket is one run of rows
    edges = [0, *(np.flatnonzero(np.diff(buckets)) + 1).tolist(), micros.size]
    windows: list[Window] = []
    for lo, hi in itertools.pairwise(edges):
        start = int(buckets[lo]) * period + origin
        windows.append(
            Window(
                start=_datetime(start),
                end=_datetime(start + period),
                positions=np.arange(lo, hi, dtype=np.intp),
            )
        )
    return windows
