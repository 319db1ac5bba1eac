"""Plotly figures as plain JSON-ready dicts; the page's script draws them.

No Plotly Python objects: a figure is ``{"data": [...], "layout": {...}}``,
built here from the page data and embedded in the HTML, and the bundled
``plotly.min.js`` (from the installed ``plotly`` package) renders it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["drift_heatmap", "event_timeline", "performance_chart", "quarantine_bars"]

_FONT = {"family": "system-ui, sans-serif", "size": 13, "color": "#1b1f24"}


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    # The page's figcaption is the visible title; ``title`` names the figure for a
    # reader of the JSON only.
    return {
        "meta": {"title": title},
        "font": _FONT,
        "margin": {"l": 60, "r": 20, "t": 16, "b": 50},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        **extra,
    }


def _labels(windows: list[Any]) -> list[str]:
    """Window starts, as dates when every window starts at midnight."""
    daily = all((w.start.hour, w.start.minute) == (0, 0) for w in windows)
    return [f"{w.start:%Y-%m-%d}" if daily else f"{w.start:%Y-%m-%d %H:%M}" for w in windows]


def drift_heatmap(page: dict[str, Any]) -> dict[str, Any]:
    """Feature x window, coloured by PSI; the text says the test and whether it drifted."""
    labels = _labels(page["windows"])
    z: list[list[float | None]] = []
    text: list[list[str]] = []
    for name in page["features"]:
        row_z: list[float | None] = []
        row_t: list[str] = []
        for cell in page["cells"][name]:
            if cell is None:
                row_z.append(None)
                row_t.append("not in this window")
                continue
            row_z.append(cell.get("psi"))
            verdict = "drifted" if cell.get("drifted") else "stable"
            statistic = cell.get("statistic")  # null when it was not a number
            shown = "-" if statistic is None else f"{statistic:.3f}"
            row_t.append(f"{cell.get('test')} {shown} ({verdict})")
        z.append(row_z)
        text.append(row_t)
    return {
        "data": [
            {
                "type": "heatmap",
                "z": z,
                "x": labels,
                "y": page["features"],
                "text": text,
                "hovertemplate": "%{y} in %{x}<br>PSI %{z:.3f}<br>%{text}<extra></extra>",
                # Plotly's YlOrRd runs dark to light; reversed, a large PSI is dark red.
                "colorscale": "YlOrRd",
                "reversescale": True,
                "zmin": 0,
                "zmax": 0.5,
                "colorbar": {"title": {"text": "PSI"}},
            }
        ],
        "layout": _layout(
            f"Drift per feature and {page['window']} window (click a cell)",
            height=max(320, 26 * len(page["features"]) + 120),
            xaxis={"type": "category"},
            yaxis={"automargin": True},
        ),
    }


def _gap(upper: float | None, lower: float | None) -> float | None:
    """The length of an error bar; none where an end of it is unknown."""
    return None if upper is None or lower is None else upper - lower


def performance_chart(page: dict[str, Any]) -> dict[str, Any]:
    """Realized (with its interval) and estimated metric per window, and the setpoint.

    ``page["realized"]`` and ``page["estimated"]`` hold a ``MetricValue`` and a
    ``MetricEstimate`` per window, None where the window has none.
    """
    labels = _labels(page["windows"])
    realized = page["realized"]
    values = [None if m is None else m.value for m in realized]
    data: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": f"realized {page['metric']}",
            "x": labels,
            "y": values,
            "line": {"color": "#1f5fa8"},
            "error_y": {
                "type": "data",
                "symmetric": False,
                "array": [None if m is None else _gap(m.high, m.value) for m in realized],
                "arrayminus": [None if m is None else _gap(m.value, m.low) for m in realized],
            },
        },
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": f"estimated {page['metric']} (no labels needed)",
            "x": labels,
            "y": [None if m is None else m.value for m in page["estimated"]],
            "line": {"color": "#b3541e", "dash": "dot"},
        },
    ]
    if page["setpoint"] is not None:
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": "setpoint",
                "x": [labels[0], labels[-1]],
                "y": [page["setpoint"], page["setpoint"]],
                "line": {"color": "#444444", "dash": "dash"},
            }
        )
    return {
        "data": data,
        "layout": _layout(
            f"{page['metric']} per window",
            height=360,
            legend={"orientation": "h", "y": -0.2},
            yaxis={"title": {"text": page["metric"]}},
        ),
    }


def event_timeline(page: dict[str, Any]) -> dict[str, Any]:
    events = page["events"]
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "markers",
                "x": [e.at.isoformat() for e in events],
                "y": [e.kind for e in events],
                "text": [
                    str(e.payload.get("reason") or e.payload.get("version") or "") for e in events
                ],
                "hovertemplate": "%{y}<br>%{x}<br>%{text}<extra></extra>",
                "marker": {"size": 9, "color": "#1f5fa8"},
            }
        ],
        "layout": _layout(
            "Events over time",
            height=max(260, 24 * len(page["kinds"]) + 120),
            yaxis={"automargin": True},
        ),
    }


def quarantine_bars(page: dict[str, Any]) -> dict[str, Any]:
    counts = page["counts"]
    return {
        "data": [
            {
                "type": "bar",
                "x": list(counts.values()),
                "y": list(counts),
                "orientation": "h",
                "marker": {"color": "#1f5fa8"},
            }
        ],
        "layout": _layout(
            "Quarantined rows by reason",
            height=max(220, 30 * len(counts) + 100),
            yaxis={"automargin": True},
        ),
    }
