"""The weekly SVG chart: well-formed, faithful to the numbers, and strict about its input.

Every test parses the SVG with ElementTree and reads geometry back out of it,
so a chart that looks plausible but puts a point on the wrong side of another
fails here.
"""

from __future__ import annotations

import itertools
import math
import re
import xml.etree.ElementTree as ET
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from setpoint.errors import InvalidParameterError
from setpoint.quickstart.svg_chart import weekly_chart

NS = "{http://www.w3.org/2000/svg}"
START = date(2013, 4, 1)


def make_weeks(n: int = 52) -> list[dict[str, Any]]:
    """Deterministic, distinct values: static decays, weekly and autopilot wiggle above it."""
    weeks = []
    for i in range(n):
        weeks.append(
            {
                "week": (START + timedelta(days=7 * i)).isoformat(),
                "static": 0.45 - 0.002 * i,
                "weekly": 0.47 + 0.02 * math.sin(i / 3),
                "autopilot": 0.48 + 0.015 * math.cos(i / 4),
                "flights": 1000 + i,
            }
        )
    return weeks


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # raises ParseError on anything not well-formed


def series_segments(root: ET.Element, name: str) -> list[list[tuple[float, float]]]:
    paths = [p for p in root.iter(f"{NS}path") if p.get("data-series") == name]
    assert len(paths) == 1, f"{len(paths)} paths for {name}"
    d = paths[0].get("d", "")
    return [
        [(float(x), float(y)) for x, y in re.findall(r"(-?[\d.]+),(-?[\d.]+)", part)]
        for part in d.split("M")[1:]
    ]


def points(root: ET.Element, name: str) -> list[tuple[float, float]]:
    return [p for segment in series_segments(root, name) for p in segment]


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{NS}text")]


def test_document_is_well_formed_and_accessible() -> None:
    svg = weekly_chart(make_weeks(), title="Flights PR-AUC")
    root = parse(svg)
    assert root.tag == f"{NS}svg"
    assert root.get("role") == "img"
    assert root.get("aria-label") == "Flights PR-AUC"
    assert root.get("width") == "900"
    assert root.get("height") == "380"
    assert root.get("viewBox") == "0 0 900 380"
    first = root[0]
    assert first.tag == f"{NS}title"
    assert first.text == "Flights PR-AUC"
    for text in root.iter(f"{NS}text"):
        assert text.get("font-family") == "sans-serif"


def test_default_label_names_the_metric_when_there_is_no_title() -> None:
    root = parse(weekly_chart(make_weeks(8), metric="roc_auc"))
    assert root.get("aria-label") == "roc_auc per week by strategy"
    assert root.find(f"{NS}title") is not None
    assert "roc_auc" in texts(root)  # the y axis title


def test_one_path_per_strategy_with_one_point_per_week() -> None:
    root = parse(weekly_chart(make_weeks()))
    for name in ("static", "weekly", "autopilot"):
        segments = series_segments(root, name)
        assert len(segments) == 1
        assert len(segments[0]) == 52
        xs = [x for x, _ in segments[0]]
        assert xs == sorted(xs)
        assert len(set(xs)) == 52
    assert points(root, "static")[0][0] == points(root, "weekly")[0][0]


def test_none_and_missing_values_split_the_line() -> None:
    weeks = make_weeks(10)
    weeks[3]["autopilot"] = None
    del weeks[4]["autopilot"]
    weeks[8]["autopilot"] = None  # leaves week 9 alone
    root = parse(weekly_chart(weeks))
    segments = series_segments(root, "autopilot")
    assert [len(s) for s in segments] == [3, 3, 1]
    dots = [c for c in root.iter(f"{NS}circle") if c.get("data-series") == "autopilot"]
    assert len(dots) == 1, "a lone point must still be visible"
    assert float(dots[0].get("cx", "nan")) == segments[2][0][0]
    # the other strategies are unaffected
    assert [len(s) for s in series_segments(root, "weekly")] == [10]
    assert not [c for c in root.iter(f"{NS}circle") if c.get("data-series") == "weekly"]


def test_a_gap_leaves_the_x_position_of_later_weeks_alone() -> None:
    full = parse(weekly_chart(make_weeks(10)))
    weeks = make_weeks(10)
    weeks[5]["weekly"] = None
    gappy = parse(weekly_chart(weeks))
    expected = [p for i, p in enumerate(points(full, "weekly")) if i != 5]
    assert points(gappy, "weekly") == expected


def test_higher_values_are_drawn_higher() -> None:
    weeks = make_weeks(30)
    root = parse(weekly_chart(weeks))
    for name in ("static", "weekly", "autopilot"):
        values = [w[name] for w in weeks]
        ys = [y for _, y in points(root, name)]
        pairs = itertools.pairwise(zip(values, ys, strict=True))
        for (v1, y1), (v2, y2) in pairs:
            if v1 > v2:
                assert y1 < y2
            elif v1 < v2:
                assert y1 > y2
    # across strategies too: the same week, the larger value is nearer the top
    assert weeks[0]["autopilot"] > weeks[0]["static"]
    assert points(root, "autopilot")[0][1] < points(root, "static")[0][1]


def test_y_ticks_cover_the_data_with_four_to_six_gridlines() -> None:
    weeks = make_weeks()
    root = parse(weekly_chart(weeks))
    labels = [t for t in root.iter(f"{NS}text") if t.get("text-anchor") == "end"]
    assert 4 <= len(labels) <= 6
    values = [float(t.text or "") for t in labels]
    ys = [float(t.get("y", "nan")) for t in labels]
    assert all(re.fullmatch(r"\d+\.\d{2,3}", t.text or "") for t in labels)
    data = [w[s] for w in weeks for s in ("static", "weekly", "autopilot")]
    assert min(values) <= min(data)
    assert max(values) >= max(data)
    steps = {round(b - a, 9) for a, b in itertools.pairwise(values)}
    assert len(steps) == 1, "ticks are evenly spaced"
    assert ys == sorted(ys, reverse=True), "larger tick values are higher up"
    # every plotted point lies between the lowest and highest gridline
    for name in ("static", "weekly", "autopilot"):
        assert all(min(ys) <= y <= max(ys) for _, y in points(root, name))


def test_flat_and_single_week_data_still_get_an_axis() -> None:
    weeks = [{"week": "2013-04-01", "static": 0.4, "weekly": 0.4, "autopilot": 0.4}]
    root = parse(weekly_chart(weeks))
    labels = [t.text for t in root.iter(f"{NS}text") if t.get("text-anchor") == "end"]
    assert len(labels) >= 3
    assert all(len(points(root, name)) == 1 for name in ("static", "weekly", "autopilot"))
    ys = {y for name in ("static", "weekly", "autopilot") for _, y in points(root, name)}
    assert len(ys) == 1
    assert all(math.isfinite(y) for y in ys)


def test_x_labels_every_four_weeks_on_a_year() -> None:
    root = parse(weekly_chart(make_weeks()))
    month = re.compile(r"[A-Z][a-z]{2} \d{2}")
    labels = [t for t in texts(root) if month.fullmatch(t)]
    assert labels[:4] == ["Apr 01", "Apr 29", "May 27", "Jun 24"]
    assert len(labels) == 13
    assert any(t.startswith("week starting") for t in texts(root))


def test_short_series_labels_every_week() -> None:
    root = parse(weekly_chart(make_weeks(5)))
    month = re.compile(r"[A-Z][a-z]{2} \d{2}")
    assert [t for t in texts(root) if month.fullmatch(t)] == [
        "Apr 01",
        "Apr 08",
        "Apr 15",
        "Apr 22",
        "Apr 29",
    ]


def test_legend_names_each_strategy_and_the_markers() -> None:
    markers = {"autopilot": ["2013-05-27"]}
    root = parse(weekly_chart(make_weeks(), markers=markers))
    legend = [t.text for t in root.iter(f"{NS}text") if t.get("data-legend")]
    assert legend == ["static", "weekly", "autopilot", "autopilot promotions"]
    plain = parse(weekly_chart(make_weeks()))
    assert [t.text for t in plain.iter(f"{NS}text") if t.get("data-legend")] == [
        "static",
        "weekly",
        "autopilot",
    ]
    custom = parse(weekly_chart(make_weeks(), markers=markers, marker_label="retrains"))
    assert "autopilot retrains" in texts(custom)


def test_series_have_distinct_colours_and_static_is_dashed() -> None:
    root = parse(weekly_chart(make_weeks()))
    paths = {p.get("data-series"): p for p in root.iter(f"{NS}path") if p.get("data-series")}
    colours = {name: p.get("stroke") for name, p in paths.items()}
    assert len(set(colours.values())) == 3
    assert paths["static"].get("stroke-dasharray")
    assert paths["weekly"].get("stroke-dasharray") is None


def test_a_strategy_beyond_the_three_gets_its_own_colour() -> None:
    weeks = make_weeks(6)
    for i, week in enumerate(weeks):
        week["drift_only"] = 0.3 + 0.01 * i
    names = ("static", "weekly", "autopilot", "drift_only")
    root = parse(weekly_chart(weeks, strategies=names))
    paths = {p.get("data-series"): p.get("stroke") for p in root.iter(f"{NS}path")}
    assert len({paths[n] for n in names}) == 4


def test_markers_one_triangle_per_date_at_its_date() -> None:
    weeks = make_weeks()
    promotions = ["2013-05-27T00:00:00-04:00", "2013-08-12", "2014-02-17T06:30:00+00:00"]
    root = parse(weekly_chart(weeks, markers={"autopilot": promotions}))
    marks = [p for p in root.iter(f"{NS}polygon") if p.get("data-markers") == "autopilot"]
    assert len(marks) == len(promotions)
    for mark in marks:
        assert mark.get("fill") == "#d62728"
    # 2013-05-27 starts week 8: its marker sits between the points of weeks 7 and 8
    apex = float(marks[0].get("points", "").split()[2].split(",")[0])
    xs = [x for x, _ in points(root, "autopilot")]
    assert xs[7] < apex < xs[8]
    # the offset in the timestamp is the local day: same place as the plain date
    same = parse(weekly_chart(weeks, markers={"autopilot": ["2013-05-27"]}))
    other = next(p for p in same.iter(f"{NS}polygon") if p.get("data-markers"))
    assert other.get("points") == marks[0].get("points")


def test_markers_outside_the_charted_weeks_are_left_out() -> None:
    weeks = make_weeks(4)  # 2013-04-01 to 2013-04-28
    dates = ["2013-03-31", "2013-04-01", "2013-04-28", "2013-04-29"]
    root = parse(weekly_chart(weeks, markers={"weekly": dates}))
    marks = [p for p in root.iter(f"{NS}polygon") if p.get("data-markers") == "weekly"]
    assert len(marks) == 2


def test_markers_of_two_strategies_do_not_overlap() -> None:
    markers = {"weekly": ["2013-05-27"], "autopilot": ["2013-05-27"]}
    root = parse(weekly_chart(make_weeks(), markers=markers))
    marks = {p.get("data-markers"): p.get("points") for p in root.iter(f"{NS}polygon")}
    assert marks["weekly"] != marks["autopilot"]


def test_text_is_escaped_and_round_trips() -> None:
    svg = weekly_chart(make_weeks(8), title='a < b & c "q"', metric="auc<&>")
    assert "a &lt; b &amp; c" in svg
    root = parse(svg)
    assert root.get("aria-label") == 'a < b & c "q"'
    title = root.find(f"{NS}title")
    assert title is not None
    assert title.text == 'a < b & c "q"'
    assert 'a < b & c "q"' in texts(root)
    assert "auc<&>" in texts(root)


def test_strategy_names_are_escaped_too() -> None:
    weeks = [{"week": "2013-04-01", 'x"<y': 0.5}, {"week": "2013-04-08", 'x"<y': 0.6}]
    root = parse(weekly_chart(weeks, strategies=['x"<y'], markers={'x"<y': ["2013-04-02"]}))
    assert len(points(root, 'x"<y')) == 2
    assert 'x"<y promotions' in texts(root)


def test_output_is_deterministic() -> None:
    markers = {"autopilot": ["2013-05-27", "2013-08-12"]}
    first = weekly_chart(make_weeks(), title="t", markers=markers)
    second = weekly_chart(make_weeks(), title="t", markers=markers)
    assert first == second
    assert first.endswith("</svg>\n")


def test_accepts_date_objects_and_numpy_numbers() -> None:
    weeks = [
        {"week": date(2013, 4, 1), "static": 1, "weekly": np.float64(0.5)},
        {"week": datetime(2013, 4, 8, 23, 0), "static": 2, "weekly": np.float32(0.6)},
        {"week": "2013-04-15T00:00:00-04:00", "static": 3, "weekly": np.int64(1)},
    ]
    root = parse(weekly_chart(weeks, strategies=("static", "weekly")))
    assert len(points(root, "static")) == 3
    xs = [x for x, _ in points(root, "weekly")]
    # a datetime late on 2013-04-08 is still that day: the weeks stay evenly spaced
    assert math.isclose(xs[1] - xs[0], xs[2] - xs[1], abs_tol=0.011)


def test_narrow_chart_wraps_the_legend_inside_the_width() -> None:
    markers = {"autopilot": ["2013-05-27"], "weekly": ["2013-06-03"]}
    root = parse(weekly_chart(make_weeks(), markers=markers, width=320, height=240))
    legend = [t for t in root.iter(f"{NS}text") if t.get("data-legend")]
    assert len({t.get("y") for t in legend}) >= 2
    for text in legend:
        assert float(text.get("x", "nan")) + 7 * len(text.text or "") <= 320


@pytest.mark.parametrize(
    ("change", "parameter"),
    [
        ({"weeks": []}, "weeks"),
        ({"strategies": ("static", "nope")}, "strategies"),
        ({"strategies": ()}, "strategies"),
        ({"strategies": ("static", "static")}, "strategies"),
        ({"width": 100}, "width"),
        ({"height": 50}, "height"),
        ({"markers": {"nope": ["2013-05-27"]}}, "markers"),
        ({"markers": {"autopilot": ["not a date"]}}, "markers"),
        ({"markers": {"autopilot": "2013-05-27"}}, "markers"),
    ],
)
def test_invalid_options_name_the_parameter(change: dict[str, Any], parameter: str) -> None:
    kwargs: dict[str, Any] = {"weeks": make_weeks(8), **change}
    weeks = kwargs.pop("weeks")
    with pytest.raises(InvalidParameterError, match=f"'{parameter}' parameter of weekly_chart"):
        weekly_chart(weeks, **kwargs)


@pytest.mark.parametrize(
    "bad",
    [math.nan, math.inf, -math.inf, "0.5", True],
)
def test_non_finite_or_non_numeric_values_are_refused(bad: Any) -> None:
    weeks = make_weeks(8)
    weeks[2]["weekly"] = bad
    with pytest.raises(InvalidParameterError, match="'weeks' parameter") as caught:
        weekly_chart(weeks)
    assert caught.value.parameter == "weeks"
    assert "'weekly'" in str(caught.value)


@pytest.mark.parametrize(
    "weeks",
    [
        [{"week": "2013-04-08", "static": 0.4}, {"week": "2013-04-01", "static": 0.4}],
        [{"week": "2013-04-01", "static": 0.4}, {"week": "2013-04-01", "static": 0.4}],
        [{"week": "April", "static": 0.4}],
        [{"static": 0.4}],
    ],
)
def test_weeks_need_increasing_iso_dates(weeks: list[dict[str, Any]]) -> None:
    with pytest.raises(InvalidParameterError, match="'weeks' parameter"):
        weekly_chart(weeks, strategies=("static",))


def test_a_strategy_with_no_value_at_all_is_refused() -> None:
    weeks = make_weeks(4)
    for week in weeks:
        week["autopilot"] = None
    with pytest.raises(InvalidParameterError, match="'strategies' parameter") as caught:
        weekly_chart(weeks)
    assert caught.value.owner == "weekly_chart"
    assert "'autopilot'" in str(caught.value)
    # a subset without it is fine
    assert weekly_chart(weeks, strategies=("static", "weekly"))
