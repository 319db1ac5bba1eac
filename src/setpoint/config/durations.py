"""Durations as people write them: ``90s``, ``30min`` (or ``30m``), ``6h``, ``7d``, ``2w``.

One syntax for the spec (``autopilot``, join tolerances) and for command-line
flags (``--label-delay``). A bare number is seconds.

>>> parse_duration("36h"), parse_duration("0")
(datetime.timedelta(days=1, seconds=43200), datetime.timedelta(0))
>>> format_duration(parse_duration("14d")), format_duration(parse_duration("90min"))
('2w', '90min')
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

__all__ = ["DURATION_HELP", "Duration", "format_duration", "parse_duration"]

DURATION_HELP = "a duration like 90s, 30min, 6h, 7d or 2w"
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)?\s*$")
_SECONDS = {"w": 604_800, "d": 86_400, "h": 3_600, "min": 60, "m": 60, "s": 1, None: 1}
_WRITTEN = {"w": 604_800, "d": 86_400, "h": 3_600, "min": 60, "s": 1}


def parse_duration(value: Any) -> timedelta:
    """A timedelta from text like ``"7d"``; a timedelta passes through; ValueError otherwise."""
    if isinstance(value, timedelta):
        return value
    match = _PATTERN.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not {DURATION_HELP}")
    return timedelta(seconds=float(match.group(1)) * _SECONDS[match.group(2)])


def format_duration(value: timedelta) -> str:
    """The largest whole unit: ``timedelta(days=14)`` -> ``"2w"``."""
    seconds = value.total_seconds()
    for unit, size in _WRITTEN.items():
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    # timedelta keeps microseconds, so six decimals are exact and read back alike.
    return f"{seconds:.6f}".rstrip("0").rstrip(".") + "s"


def _positive(value: Any) -> timedelta:
    parsed = parse_duration(value)
    if parsed <= timedelta(0):
        raise ValueError(f"{value!r} is not a positive duration")
    return parsed


# A positive duration in a spec: read from text, written back as text.
Duration = Annotated[
    timedelta,
    BeforeValidator(_positive),
    PlainSerializer(format_duration, return_type=str),
]
