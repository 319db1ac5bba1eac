"""A monitoring result as one self-contained HTML file (Plotly, the ``monitor`` extra).

The file holds Plotly's JavaScript inline, once, and nothing that loads from
the network (no CDN, no web fonts, no MathJax), so it can be mailed, archived
or opened on an air-gapped machine. It shows:

- the drift share per window, against the share that raises an alert;
- a heat map of every feature's drift decision per window, with its statistic;
- the realized metric (bootstrap interval) and the CBPE estimate (band), against the setpoint;
- for each feature drifted in the latest window, its distribution in the
  reference (the stored bins or category counts) against that window's.
"""

from __future__ import annotations

import html
import itertools
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from setpoint.errors import MissingExtraError
from setpoint.monitor.summaries import CategoricalSummary, NumericSummary
from setpoint.watch.run import on_event_clock
from setpoint.watch.windows import load_traffic, parse_window

if TYPE_CHECKING:
    from setpoint.monitor.drift import FeatureDrift
    from setpoint.monitor.reference import Reference
    from setpoint.project import Project
    from setpoint.watch.run import MonitorResult, WindowResult

__all__ = ["window_inputs", "write_report"]

# System fonts only: a web font would be a request to the network.
_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}"
    "h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em}.note{color:#666}"
)
_LAYOUT: dict[str, Any] = {"height": 380, "margin": {"l": 60, "r": 20, "t": 40, "b": 50}}


def _plotly() -> Any:
    try:
        import plotly.graph_objects as go
    except ImportError:
        raise MissingExtraError(
            extra="monitor", module="plotly", feature="setpoint monitor --html"
        ) from None
    return go


def _label(w: WindowResult) -> str:
    return w.start.strftime("%Y-%m-%d %H:%M")


def _div(figure: Any) -> str:
    # The bundle is written once in <head>; every figure refers to it.
    return str(figure.to_html(full_html=False, include_plotlyjs=False, include_mathjax=False))


def _drift_share(go: Any, result: MonitorResult, max_share: float | None) -> str:
    x = [w.start for w in result.windows]
    fig = go.Figure(
        go.Scatter(
            x=x,
            y=[w.drift.drift_share for w in result.windows],
            mode="lines+markers",
            name="drift share",
            customdata=[", ".join(w.top_drifted()) or "-" for w in result.windows],
            hovertemplate="%{x}<br>share %{y:.2f}<br>top drifted: %{customdata}<extra></extra>",
        )
    )
    if max_share is not None:
        fig.add_hline(y=max_share, line_dash="dash", line_color="crimson", annotation_text="alert")
    fig.update_layout(
        title="Importance-weighted share of drifted features", yaxis_range=[0, 1.05], **_LAYOUT
    )
    return _div(fig)


def _cell(found: FeatureDrift | None) -> tuple[float | None, str]:
    if found is None:
        return None, "-"
    why = f" ({', '.join(found.reasons)})" if found.reasons else ""
    return float(found.drifted), f"{found.test} {found.statistic:.3g}{why}"


def _heatmap(go: Any, result: MonitorResult) -> str:
    rows = [f.name for f in result.windows[-1].drift.features]
    columns = [_label(w) for w in result.windows]
    cells: list[list[tuple[float | None, str]]] = [
        [_cell(next((f for f in w.drift.features if f.name == name), None)) for w in result.windows]
        for name in rows
    ]
    if result.windows[-1].drift.prediction is not None:
        rows.append("(prediction)")
        cells.append([_cell(w.drift.prediction) for w in result.windows])
    z = [[value for value, _ in row] for row in cells]
    text = [[words for _, words in row] for row in cells]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=columns,
            y=rows,
            text=text,
            texttemplate="%{text}" if len(columns) * len(rows) <= 200 else None,
            colorscale=[[0, "#e8f1e4"], [1, "#e4572e"]],
            zmin=0,
            zmax=1,
            showscale=False,
            hovertemplate="%{y} @ %{x}<br>%{text}<extra></extra>",
        )
    )
    layout = {**_LAYOUT, "height": max(300, 28 * len(rows) + 120)}
    fig.update_layout(title="Drift per feature and window (red: drifted)", **layout)
    return _div(fig)


def _performance(go: Any, result: MonitorResult, setpoint: float | None) -> str:
    x = [w.start for w in result.windows]
    fig = go.Figure()
    realized = [
        w.realized.metrics.get(result.metric) if w.realized else None for w in result.windows
    ]
    estimated = [
        w.estimate.metrics.get(result.metric) if w.estimate else None for w in result.windows
    ]
    for name, color, values in (
        ("realized", "31,119,180", realized),
        ("estimated (CBPE)", "255,127,14", estimated),
    ):
        point = [getattr(v, "value", None) for v in values]
        if all(p is None for p in point):
            continue
        low = [getattr(v, "low", None) for v in values]
        high = [getattr(v, "high", None) for v in values]
        # The interval as one closed shape: along the upper bounds, back along the lower.
        band = go.Scatter(
            x=[*x, *x[::-1]],
            y=[*high, *low[::-1]],
            fill="toself",
            fillcolor=f"rgba({color},0.2)",
            line={"width": 0},
            hoverinfo="skip",
            name=f"{name} interval",
        )
        fig.add_trace(band)
        line = go.Scatter(x=x, y=point, mode="lines+markers", name=name, line_color=f"rgb({color})")
        fig.add_trace(line)
    if setpoint is not None:
        fig.add_hline(
            y=setpoint, line_dash="dash", line_color="crimson", annotation_text="setpoint"
        )
    fig.update_layout(title=f"{result.metric} per window", **_LAYOUT)
    return _div(fig)


def _numeric_bins(
    summary: NumericSummary, values: pd.Series | None
) -> tuple[list[str], list[int], list[int] | None]:
    edges = summary.edges
    labels = [f"< {edges[0]:.4g}"]
    labels += [f"[{lo:.4g}, {hi:.4g})" for lo, hi in itertools.pairwise(edges)]
    labels.append(f">= {edges[-1]:.4g}")
    current = None
    if values is not None:
        floats = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
        current = [int(c) for c in summary.bin_counts(floats[np.isfinite(floats)])]
    return labels, list(summary.counts), current


def _category_bins(
    summary: CategoricalSummary, values: pd.Series | None
) -> tuple[list[str], list[int], list[int] | None]:
    labels = [str(c) for c in summary.categories] + ["(other)"]
    reference = [*summary.counts, summary.other]
    current = None
    if values is not None:
        # Categories are compared as text: the log holds JSON, the reference may hold numbers.
        found = values.dropna().astype(str).value_counts()
        known = [int(found.get(label, 0)) for label in labels[:-1]]
        current = [*known, int(found.sum()) - sum(known)]
    return labels, reference, current


def _distribution(go: Any, name: str, reference: Reference, values: pd.Series | None) -> str:
    summary = reference.columns[name]
    if isinstance(summary, NumericSummary):
        labels, ref_counts, cur_counts = _numeric_bins(summary, values)
    else:
        labels, ref_counts, cur_counts = _category_bins(summary, values)
    fig = go.Figure()
    for side, counts in (("reference", ref_counts), ("latest window", cur_counts)):
        if counts is not None:
            fig.add_trace(go.Bar(x=labels, y=np.divide(counts, max(sum(counts), 1)), name=side))
    fig.update_layout(
        title=f"{name}: share of rows per {'bin' if summary.kind == 'numeric' else 'category'}",
        barmode="group",
        **_LAYOUT,
    )
    return _div(fig)


def window_inputs(
    project: Project,
    result: MonitorResult,
    window: WindowResult,
    *,
    clock: Literal["event", "served"] = "event",
    only_version: bool = False,
) -> pd.DataFrame:
    """The logged inputs of ``window`` of ``result``, read again from the prediction log.

    ``clock`` and ``only_version`` (a ``version`` was passed) as ``monitor_project``
    was given them. A count window is its last ``window.n`` rows up to its end time.
    """
    traffic = load_traffic(project.store, project=project.name)
    if clock == "event" and project.spec.timestamp is not None:
        traffic = on_event_clock(traffic, project.spec.timestamp)
    times = traffic.meta["time"]
    keep = (times >= pd.Timestamp(window.start)).to_numpy()
    by_rows = parse_window(result.window).unit == "rows"
    end = pd.Timestamp(window.end)
    keep = keep & (times <= end if by_rows else times < end).to_numpy()
    if only_version:
        keep = keep & (traffic.meta["model_version"] == str(result.version)).to_numpy()
    inputs = traffic.inputs[keep]
    return inputs.tail(window.n) if by_rows else inputs


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        # mkstemp makes the file private; a report is for sharing, as any file the user writes
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_report(
    result: MonitorResult,
    path: Path,
    *,
    reference: Reference,
    current: pd.DataFrame | Mapping[str, Any] | None = None,
    setpoint: float | None = None,
    max_drift_share: float | None = None,
) -> Path:
    """Write ``result`` to ``path`` as one offline HTML file; returns ``path``.

    ``reference`` is the model's (``load_reference(...).reference``);
    ``current`` the latest window's inputs (``window_inputs``), for the
    distributions of its drifted features: without it only the reference's
    are drawn. ``setpoint`` and ``max_drift_share`` draw the alert levels.
    """
    go = _plotly()
    import plotly.offline

    latest = result.windows[-1]
    sections = [
        "<h2>Drift</h2>",
        _drift_share(go, result, max_drift_share),
        _heatmap(go, result),
        f"<h2>Performance ({html.escape(result.metric)})</h2>",
        _performance(go, result, setpoint),
        f"<h2>Drifted features in the latest window ({html.escape(_label(latest))} UTC)</h2>",
    ]
    drifted = latest.top_drifted(len(latest.drift.features))
    sections += [] if drifted else ['<p class="note">No feature drifted in the latest window.</p>']
    for name in drifted:
        values = None
        if current is not None and name in current:
            values = pd.Series(np.asarray(current[name], dtype=object))
        sections.append(_distribution(go, name, reference, values))
    title = html.escape(
        f"{result.project}: served traffic against model @{result.version}, "
        f"{result.window} windows from {_label(result.windows[0])} to {_label(latest)} UTC"
    )
    notes = "".join(f'<p class="note">warning: {html.escape(w)}</p>' for w in result.warnings)
    document = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{_STYLE}</style>"
        f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script></head>'
        f"<body><h1>{title}</h1>{notes}{''.join(sections)}</body></html>\n"
    )
    _write_atomically(path, document)
    return path
