"""A monitoring result as one self-contained HTML file (Plotly, the ``monitor`` extra).

The file holds Plotly's JavaScript inline, once, and nothing that loads from
the network (no CDN, no web fonts, no MathJax), so it can be mailed, archived
or opened on an air-gapped machine. It shows:

- the drift share per window, against the share that raises an alert;
- a heat map of every feature's drift decision per window, with its statistic;
- the realized metric (bootstrap interval) and the CBPE estimate (band), against the setpoint;
- per segment column, the realized metric of each of its values per window
  (with its interval), and which were skipped;
- when it was run, the domain classifier's AUC per window against its
  threshold, with the features that separate the window from the reference;
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
from setpoint.monitor.runner import on_event_clock
from setpoint.monitor.windows import parse_window
from setpoint.stats.summaries import CategoricalSummary, NumericSummary
from setpoint.traffic.frames import load_traffic

if TYPE_CHECKING:
    from setpoint.monitor.results import MonitorResult, WindowResult
    from setpoint.project import Project
    from setpoint.stats.drift import FeatureDrift
    from setpoint.stats.reference import Reference

__all__ = ["window_inputs", "write_report"]

# System fonts only: a web font would be a request to the network.
_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}"
    "h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em}.note{color:#666}"
    "table.segments{border-collapse:collapse;font-size:.9em;margin:1em 0}"
    "table.segments td,table.segments th{border:1px solid #ddd;padding:.3em .6em;text-align:left}"
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


def _segment_charts(go: Any, result: MonitorResult) -> list[str]:
    """One chart per segment column: each value's realized metric per window."""
    metric = result.metric
    x = [w.start for w in result.windows]
    sections: list[str] = []
    for column in result.segment_columns:
        values: dict[Any, list[Any]] = {}
        for i, w in enumerate(result.windows):
            for s in w.segments:
                found = s.metrics.get(metric)
                if s.column == column and found is not None and found.value is not None:
                    values.setdefault(s.segment, [None] * len(x))[i] = (found, s.n)
        if not values:
            sections.append(
                f'<p class="note">{html.escape(column)}: no value has {result.min_segment_rows} '
                "labelled rows in any window (or the column is in no logged input).</p>"
            )
            continue
        fig = go.Figure()
        for segment, cells in sorted(values.items(), key=lambda item: str(item[0])):
            point = [None if c is None else c[0].value for c in cells]
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=point,
                    mode="lines+markers",
                    name="(missing)" if segment is None else str(segment),
                    error_y={
                        "type": "data",
                        "symmetric": False,
                        "array": [_gap(c, "high") for c in cells],
                        "arrayminus": [_gap(c, "low") for c in cells],
                        "thickness": 1,
                    },
                    customdata=[0 if c is None else c[1] for c in cells],
                    hovertemplate="%{x}<br>%{y:.3f}, %{customdata} labelled rows<extra></extra>",
                )
            )
        fig.update_layout(
            title=f"Realized {metric} per {column} (values with at least "
            f"{result.min_segment_rows} labelled rows; bars: bootstrap interval)",
            **_LAYOUT,
        )
        sections.append(_div(fig))
    return sections


def _gap(cell: Any, side: Literal["low", "high"]) -> float | None:
    if cell is None:
        return None
    value, bound = cell[0].value, getattr(cell[0], side)
    return None if value is None or bound is None else abs(bound - value)


def _segment_table(result: MonitorResult) -> str:
    """Per window: the worst segments, and those set aside."""
    rows = []
    for w in result.windows:
        worst = w.worst_segments(result.metric, higher_is_better=result.higher_is_better)
        cells = []
        for s in worst:
            found = s.metrics[result.metric]
            interval = (
                f" [{found.low:.3f}, {found.high:.3f}]"
                if found.low is not None and found.high is not None
                else ""
            )
            name = "(missing)" if s.segment is None else s.segment
            cells.append(f"{s.column}={name}: {found.value:.3f}{interval} (n={s.n})")
        aside = "; ".join(w.set_aside(result.metric, result.min_segment_rows)) or "-"
        rows.append(
            f"<tr><td>{html.escape(_label(w))}</td><td>{w.n_labelled}</td>"
            f"<td>{html.escape('; '.join(cells) or '-')}</td>"
            f"<td>{html.escape(aside)}</td></tr>"
        )
    order = "lowest" if result.higher_is_better else "highest"
    return (
        '<table class="segments"><thead><tr><th>window</th><th>labelled</th>'
        f"<th>worst segments ({order} {html.escape(result.metric)} first)</th>"
        f"<th>skipped (fewer than {result.min_segment_rows} labelled rows, or why)</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _multivariate(go: Any, result: MonitorResult) -> str:
    found = [(w, w.multivariate) for w in result.windows if w.multivariate is not None]
    # One reason (the held-out rows could not be read) often holds for every window.
    skipped: dict[str, list[str]] = {}
    for w in result.windows:
        if w.multivariate is None:
            skipped.setdefault(w.multivariate_skipped or "-", []).append(_label(w))
    notes = "".join(
        f'<p class="note">not run on {html.escape(", ".join(labels))}: {html.escape(why)}</p>'
        for why, labels in skipped.items()
    )
    if not found:
        return notes
    x = [w.start for w, _ in found]
    tops = [", ".join(f"{name} ({share:.2f})" for name, share in w.separating()) for w, _ in found]
    tops = [top or "-" for top in tops]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=x,
            y=[v.auc for _, v in found],
            mode="lines+markers",
            name="domain classifier AUC",
            marker={"color": ["#e4572e" if v.drifted else "#1f77b4" for _, v in found], "size": 10},
            customdata=tops,
            hovertemplate="%{x}<br>AUC %{y:.3f}<br>separating: %{customdata}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=[v.threshold for _, v in found],
            mode="lines",
            name="threshold (permutations)",
            line={"dash": "dash", "color": "crimson"},
        )
    )
    fig.update_layout(
        title="Domain classifier AUC per window (red: drifted), against its threshold",
        yaxis_range=[min(0.3, *(v.auc - 0.05 for _, v in found)), 1.02],
        **_LAYOUT,
    )
    rows = "".join(
        f"<tr><td>{html.escape(_label(w))}</td><td>{v.auc:.3f}</td><td>{v.threshold:.3f}</td>"
        f"<td>{'yes' if v.drifted else 'no'}</td><td>{html.escape(top)}</td></tr>"
        for (w, v), top in zip(found, tops, strict=True)
    )
    return (
        _div(fig)
        + '<table class="segments"><thead><tr><th>window</th><th>AUC</th><th>threshold</th>'
        "<th>drifted</th><th>separating features (share of gain)</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>{notes}"
    )


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
    by_rows = parse_window(result.window).rows is not None
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

    ``reference`` is the model's (``Project.load_reference(...).reference``);
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
    ]
    if result.segment_columns:
        sections += [
            f"<h2>Performance per segment ({html.escape(result.metric)})</h2>",
            _segment_table(result),
            *_segment_charts(go, result),
        ]
    if result.multivariate:
        sections += [
            "<h2>Multivariate drift (domain classifier against the held-out rows)</h2>",
            _multivariate(go, result),
        ]
    sections.append(
        f"<h2>Drifted features in the latest window ({html.escape(_label(latest))} UTC)</h2>"
    )
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
