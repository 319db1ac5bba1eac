"""A weekly metric per strategy as a self-contained SVG line chart.

``setpoint simulate`` reports one metric per week for each strategy; this draws
them for README.md and docs/autopilot.md. The SVG is written by hand, so the
chart needs no plotting library, and it is byte-for-byte reproducible: the same
weeks give the same file, which keeps a committed chart's diff honest.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any
from xml.sax.saxutils import escape

from setpoint.errors import InvalidParameterError

__all__ = ["weekly_chart"]

# Colour-blind-safe (tab10), and static also dashed so it survives greyscale.
_COLOURS = {"static": "#7f7f7f", "weekly": "#1f77b4", "autopilot": "#d62728"}
_SPARE = ("#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
_DASHES = {"static": "6 4"}
# strftime("%b") follows the process locale; a chart must not change with it.
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MIN_WIDTH, _MIN_HEIGHT = 320, 200
_LEFT, _RIGHT, _BOTTOM = 64, 20, 44
_QUOTE = {'"': "&quot;"}
_FONT: dict[str, Any] = {"font_family": "sans-serif", "font_size": 12, "fill": "#333"}


def _fail(parameter: str, expected: str, got: Any) -> InvalidParameterError:
    return InvalidParameterError(
        owner="weekly_chart", parameter=parameter, expected=expected, got=got
    )


def _attrs(**attrs: Any) -> str:
    """``font_size=12`` becomes ``font-size="12"``; floats get 2 decimals, enough on screen."""
    text = {k: f"{v:.2f}" if isinstance(v, float) else str(v) for k, v in attrs.items()}
    return " ".join(f'{k.replace("_", "-")}="{escape(v, _QUOTE)}"' for k, v in text.items())


def _el(tag: str, text: str | None = None, **attrs: Any) -> str:
    if text is None:
        return f"<{tag} {_attrs(**attrs)}/>"
    return f"<{tag} {_attrs(**attrs)}>{escape(text)}</{tag}>"


def _text(text: str, x: float, y: float, **attrs: Any) -> str:
    return _el("text", text, x=x, y=y, **{**_FONT, **attrs})


def _triangle(x: float, base: float, half: float = 4) -> str:
    return f"{x - half:.2f},{base} {x + half:.2f},{base} {x:.2f},{base - 2 * half}"


def _day(value: Any, parameter: str) -> date:
    if isinstance(value, date):
        return value.date() if isinstance(value, datetime) else value
    try:  # the written date, not the UTC one: 00:00-04:00 is that day where it happened
        return datetime.fromisoformat(value).date()
    except (TypeError, ValueError):
        raise _fail(parameter, "ISO dates such as '2013-04-01'", value) from None


def _ticks(lo: float, hi: float) -> tuple[list[float], int]:
    """3 to 5 intervals of a 1, 2, 2.5 or 5 step covering [lo, hi], and their decimals."""
    if hi - lo < 1e-12:  # a flat series still needs an axis with some height
        lo, hi = lo - max(abs(lo), 1.0) * 0.01, hi + max(abs(hi), 1.0) * 0.01
    exponent = math.floor(math.log10((hi - lo) / 10))  # 10+ intervals: the loop only widens
    while True:
        for mantissa in (1.0, 2.0, 2.5, 5.0):
            step = mantissa * 10.0**exponent
            first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
            if last - first <= 5:
                decimals = max(-exponent + (mantissa == 2.5), 2 if step < 1 else 0)
                return [round(i * step, 12) for i in range(first, last + 1)], decimals
        exponent += 1


def _validate(
    weeks: Sequence[Mapping[str, Any]],
    strategies: Sequence[str],
    markers: Mapping[str, Sequence[str]],
    size: tuple[int, int],
) -> tuple[list[date], dict[str, list[float | None]], dict[str, list[date]]]:
    width, height = size
    if width < _MIN_WIDTH:
        raise _fail("width", f"at least {_MIN_WIDTH}", width)
    if height < _MIN_HEIGHT:
        raise _fail("height", f"at least {_MIN_HEIGHT}", height)
    if not weeks:
        raise _fail("weeks", "a non-empty sequence of weeks", weeks)
    if not strategies or isinstance(strategies, str) or len(set(strategies)) < len(strategies):
        raise _fail("strategies", "a sequence of distinct strategy names", strategies)
    days = [_day(week.get("week"), "weeks") for week in weeks]
    if any(b <= a for a, b in itertools.pairwise(days)):
        raise _fail("weeks", "in increasing order of their 'week' date", [str(d) for d in days])
    series: dict[str, list[float | None]] = {}
    for name in strategies:
        values = [week.get(name) for week in weeks]
        for raw in values:
            number = isinstance(raw, numbers.Real) and not isinstance(raw, bool)
            if raw is not None and not (number and math.isfinite(raw)):
                raise _fail("weeks", f"finite numbers or None for {name!r}", raw)
        if all(v is None for v in values):
            raise _fail("strategies", "names with at least one value in weeks", name)
        series[name] = [None if v is None else float(v) for v in values]
    marks: dict[str, list[date]] = {}
    for name, dates in markers.items():
        if name not in series or isinstance(dates, str):  # a str would be read letter by letter
            raise _fail("markers", f"ISO dates keyed by one of {list(strategies)}", {name: dates})
        marks[name] = [_day(d, "markers") for d in dates]
    return days, series, marks


def weekly_chart(
    weeks: Sequence[Mapping[str, Any]],
    *,
    strategies: Sequence[str] = ("static", "weekly", "autopilot"),
    metric: str = "pr_auc",
    title: str = "",
    markers: Mapping[str, Sequence[str]] | None = None,
    marker_label: str = "promotions",
    width: int = 900,
    height: int = 380,
) -> str:
    """The SVG document of ``metric`` per week, one line per strategy.

    Each week is plotted at its middle, so a week's line spans the days it
    scores. A None or missing value breaks that strategy's line. ``markers``
    maps a strategy to dates (e.g. its promotions) drawn as triangles along the
    bottom in its colour; dates outside the charted weeks have no place on the
    axis and are left out.
    """
    days, series, marks = _validate(weeks, strategies, markers or {}, (width, height))
    colours = {n: _COLOURS.get(n, _SPARE[i % len(_SPARE)]) for i, n in enumerate(strategies)}
    start, span, right = days[0], (days[-1] - days[0]).days + 7, width - _RIGHT

    legend = [(n, n, "line") for n in strategies]
    legend += [(n, f"{n} {marker_label}", "mark") for n, d in marks.items() if d]
    # Wrap by an estimated text width: an SVG cannot measure its own text.
    rows: list[list[tuple[float, str, str, str]]] = [[]]
    x = float(_LEFT)
    for name, text, kind in legend:
        if rows[-1] and x + 30 + 7 * len(text) > right:
            rows.append([])
            x = float(_LEFT)
        rows[-1].append((x, name, text, kind))
        x += 46 + 7 * len(text)
    legend_top = 44 if title else 20
    top, bottom = legend_top + 18 * len(rows) + 8, height - _BOTTOM
    known = [v for vs in series.values() for v in vs if v is not None]
    ticks, decimals = _ticks(min(known), max(known))

    def x_of(day: date, offset: float = 0.0) -> float:
        return _LEFT + ((day - start).days + offset) / span * (right - _LEFT)

    def y_of(value: float) -> float:
        return bottom - (value - ticks[0]) / (ticks[-1] - ticks[0]) * (bottom - top)

    def stroke(name: str) -> dict[str, Any]:
        dash = {"stroke_dasharray": _DASHES[name]} if name in _DASHES else {}
        return {"stroke": colours[name], "stroke_width": 2, **dash}

    label = title or f"{metric} per week by strategy"
    box = _attrs(width=width, height=height, viewBox=f"0 0 {width} {height}", aria_label=label)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" {box} role="img">',
        f"<title>{escape(label)}</title>",
        # Opaque, so the dark text stays readable on GitHub's dark theme.
        _el("rect", width=width, height=height, fill="#ffffff"),
    ]
    if title:
        out.append(_text(title, _LEFT, 26, font_size=15, font_weight="bold"))
    for tick in ticks:
        y = y_of(tick)
        out.append(_el("line", x1=_LEFT, y1=y, x2=right, y2=y, stroke="#e5e5e5"))
        text = f"{tick + 0.0:.{decimals}f}"  # + 0.0 turns -0.0 into 0.0
        out.append(_text(text, _LEFT - 6, y, dy="0.32em", text_anchor="end"))
    for day in days[:: max(1, math.ceil(8 * span / (right - _LEFT)))]:  # labels 56px+ apart
        x = x_of(day)
        out.append(_el("line", x1=x, y1=bottom, x2=x, y2=bottom + 4, stroke="#333"))
        text = f"{_MONTHS[day.month - 1]} {day:%d}"
        out.append(_text(text, x, bottom + 17, text_anchor="middle"))
    out.append(_el("path", d=f"M{_LEFT},{top} V{bottom} H{right}", fill="none", stroke="#333"))
    text = f"week starting ({days[0]} to {days[-1]})"
    out.append(_text(text, (_LEFT + right) / 2, height - 8, text_anchor="middle"))
    middle = (top + bottom) / 2
    turn = f"rotate(-90 16 {middle:.2f})"
    out.append(_text(metric, 16, middle, transform=turn, text_anchor="middle"))

    for name, values in series.items():
        segments: list[list[tuple[float, float]]] = [[]]
        for day, value in zip(days, values, strict=True):
            if value is None:
                segments.append([])
            else:
                segments[-1].append((x_of(day, 3.5), y_of(value)))
        segments = [s for s in segments if s]
        d = " ".join("M" + " L".join(f"{px:.2f},{py:.2f}" for px, py in s) for s in segments)
        out.append(_el("path", data_series=name, d=d, fill="none", **stroke(name)))
        for (px, py), *rest in segments:  # a lone point draws no line, so give it a dot
            if not rest:
                out.append(_el("circle", data_series=name, cx=px, cy=py, r=3, fill=colours[name]))

    for lane, (name, dates) in enumerate(marks.items()):  # a lane each: no overlapping triangles
        base = bottom - 1 - 10 * lane
        for day in dates:
            if 0 <= (day - start).days < span:
                points = _triangle(x_of(day), base)
                out.append(_el("polygon", data_markers=name, points=points, fill=colours[name]))

    for r, items in enumerate(rows):
        y = legend_top + 18 * r
        for x, name, text, kind in items:
            if kind == "line":
                out.append(_el("line", x1=x, y1=y, x2=x + 24, y2=y, **stroke(name)))
            else:
                out.append(_el("polygon", points=_triangle(x + 12, y + 4), fill=colours[name]))
            out.append(_text(text, x + 30, y, dy="0.32em", data_legend=name))
    return "\n".join([*out, "</svg>"]) + "\n"
