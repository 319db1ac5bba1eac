"""``setpoint monitor``: drift and quality of the served traffic, window by window."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from setpoint._console import console, err_console, table
from setpoint.cli._options import ProjectDir, open_project
from setpoint.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

    from setpoint.monitor.alerts import AlertOutcome
    from setpoint.monitor.results import MonitorResult, WindowResult
    from setpoint.project import Project

__all__ = ["register"]


class _Format(StrEnum):
    TABLE = "table"
    JSON = "json"


class _Clock(StrEnum):
    EVENT = "event"
    SERVED = "served"


def register(app: typer.Typer) -> None:
    """Add ``monitor`` to the root ``setpoint`` command."""
    app.command("monitor")(_monitor)


def _when(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not an ISO 8601 date or date and time (e.g. 2013-08-01 or "
            "2013-08-01T06:00:00+00:00)",
            param_hint=f"'{option}'",
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _monitor(
    directory: ProjectDir = Path(),
    window: Annotated[
        str,
        typer.Option(
            "--window",
            "-w",
            help="Window: a length of time in the spec's duration syntax, aligned to UTC "
            "boundaries (30min, 6h, 1d, 1w; weeks start on Monday), or a count of consecutive "
            "predictions (5000rows).",
        ),
    ] = "1w",
    since: Annotated[
        str | None,
        typer.Option(help="First prediction time to read (ISO 8601; UTC unless it has an offset)."),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Read predictions before this time (ISO 8601).")
    ] = None,
    clock: Annotated[
        _Clock,
        typer.Option(
            help="event: place each prediction at its record's own time (the spec's timestamp "
            "field), so replayed traffic is judged as it happened; served: when it was answered."
        ),
    ] = _Clock.EVENT,
    version: Annotated[
        int | None,
        typer.Option(
            help="Monitor only this model version's predictions, against its own reference "
            "(default: every served prediction against the champion's)."
        ),
    ] = None,
    output: Annotated[_Format, typer.Option("--format", help="table or json.")] = _Format.TABLE,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Also write the result as one self-contained HTML report (charts; opens "
            "offline). Needs the 'monitor' extra.",
            dir_okay=False,
        ),
    ] = None,
    alerts: Annotated[
        bool,
        typer.Option(
            "--alerts/--no-alerts",
            help="Check the spec's monitoring rules on every window shown, store each new "
            "alert once and POST it to monitoring.webhook.",
        ),
    ] = True,
    segments: Annotated[
        bool,
        typer.Option(
            "--segments",
            help="Also print, per window, the values of the spec's segment columns with the "
            "worst realized metric (and those skipped, with why). JSON always has them.",
        ),
    ] = False,
    multivariate: Annotated[
        bool,
        typer.Option(
            "--multivariate",
            help="Also run a domain classifier per window against the model's held-out rows "
            "(read again from its training dataset; about a second a window): its AUC, "
            "threshold and the features that separate the two.",
        ),
    ] = False,
    recompute: Annotated[
        bool,
        typer.Option(
            "--recompute",
            help="Compute every window again, even those stored unchanged since an earlier "
            "run (windows are kept in the store; only new traffic or labels recompute one).",
        ),
    ] = False,
) -> None:
    """Whether the served inputs drifted and whether the model got worse, per window.

    Reads the prediction log of 'setpoint serve' (champion and canary answers),
    joins the feedback posted so far, and compares each window with the
    reference stored with the model: drift per feature and of the prediction,
    the project's metric realized on labelled rows (overall and per segment),
    and (binary models) that metric estimated from the scores alone (CBPE)
    before labels arrive.
    """
    from setpoint.monitor.runner import monitor_project
    from setpoint.monitor.windows import parse_window

    try:
        parse_window(window)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--window'") from None
    start, stop = _when(since, "--since"), _when(until, "--until")
    if start is not None and stop is not None and start >= stop:
        raise typer.BadParameter(
            f"--since {start.isoformat()} is not before --until {stop.isoformat()}",
            param_hint="'--since'",
        )
    project = open_project(directory)
    if segments and not project.spec.segments:
        raise typer.BadParameter(
            "the spec lists no segment columns, so there is no per-segment metric to show: "
            "name some under 'segments' in setpoint.yaml (e.g. segments: [carrier])",
            param_hint="'--segments'",
        )
    result = monitor_project(
        project,
        window=window,
        since=start,
        until=stop,
        version=version,
        clock=clock.value,
        multivariate=multivariate,
        reuse=not recompute,
    )
    if html is not None:
        _report(project, result, html, clock=clock.value, only_version=version is not None)
    outcome = None
    if alerts:
        from setpoint.monitor.alerts import raise_alerts

        outcome = raise_alerts(project, result)
    if output is _Format.JSON:
        payload = result.to_dict()
        if outcome is not None:
            payload["alerts"] = [alert.payload for alert in outcome.fired]
            payload["alert_delivery_failures"] = list(outcome.failed)
        console.print_json(json.dumps(payload))
    else:
        _print(result)
        if segments:
            _print_segments(result)
        if multivariate:
            _print_multivariate(result)
    if outcome is not None:
        # stderr under --format json, so stdout stays one JSON document
        _print_alerts(outcome, err_console if output is _Format.JSON else console)


def _report(
    project: Project,
    result: MonitorResult,
    path: Path,
    *,
    clock: Literal["event", "served"],
    only_version: bool,
) -> None:
    from setpoint.monitor.html_report import window_inputs, write_report

    monitoring = project.spec.monitoring
    write_report(
        result,
        path,
        reference=project.load_reference(result.version).reference,
        current=window_inputs(
            project, result, result.windows[-1], clock=clock, only_version=only_version
        ),
        setpoint=monitoring.setpoint,
        max_drift_share=monitoring.max_drift_share if "drift" in monitoring.alerts else None,
    )
    err_console.print(f"report written to {path}")


def _print_alerts(outcome: AlertOutcome, out: Console) -> None:
    for alert in outcome.fired:
        out.print(f"[red]alert ({alert.rule}):[/] {alert.message}", soft_wrap=True)
    if outcome.repeated:
        out.print(
            f"{len(outcome.repeated)} alert(s) already raised by an earlier run: not repeated"
        )
    for failure in outcome.failed:
        err_console.print(f"[yellow]warning:[/] alert not delivered: {failure}", soft_wrap=True)


def _metric_cell(value: float | None, low: float | None, high: float | None) -> str:
    if value is None:
        return "-"
    if low is None or high is None:
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _row(w: WindowResult, metric: str) -> list[object]:
    realized = w.realized.metrics.get(metric) if w.realized is not None else None
    estimated = w.estimate.metrics.get(metric) if w.estimate is not None else None
    error = w.error.metrics.get(metric) if w.error is not None else None
    prediction = w.drift.prediction
    return [
        w.start.strftime("%Y-%m-%d %H:%M"),
        w.n,
        ", ".join(w.top_drifted()) or "-",
        f"{w.drift.drift_share:.2f}" + (" drifted" if w.drift.drifted else ""),
        "yes" if prediction is not None and prediction.drifted else "no",
        f"{_metric_cell(*_parts(realized))} (n={w.n_labelled})",
        _metric_cell(*_parts(estimated)),
        "-" if error is None or error.error is None else f"{error.error:+.3f}",
    ]


def _parts(value: object) -> tuple[float | None, float | None, float | None]:
    if value is None:
        return None, None, None
    return (
        getattr(value, "value", None),
        getattr(value, "low", None),
        getattr(value, "high", None),
    )


def _print(result: MonitorResult) -> None:
    metric = result.metric
    console.print(
        table(
            f"{result.project}: served traffic against model @{result.version} "
            f"({result.window} windows, UTC)",
            [
                "start",
                "rows",
                "drifted features (top 3)",
                "drift share",
                "prediction drift",
                f"realized {metric} (labels)",
                f"estimated {metric}",
                "estimate error",
            ],
            [_row(w, metric) for w in result.windows],
        )
    )
    latest = result.windows[-1]
    features = sorted(latest.drift.features, key=lambda f: (not f.drifted, -f.weight, f.name))
    console.print(
        table(
            f"features in the latest window ({latest.start.strftime('%Y-%m-%d %H:%M')}, "
            f"{latest.n} rows)",
            ["feature", "drifted", "test", "statistic", "p-value", "importance", "why"],
            [
                [
                    f.name,
                    "yes" if f.drifted else "no",
                    f.test,
                    f.statistic,
                    f.p_value,
                    f.weight,
                    ", ".join(f.reasons) or "-",
                ]
                for f in features
            ],
        )
    )
    if result.reused:
        console.print(
            f"{result.reused} of {len(result.windows)} windows read back from the store, "
            "unchanged since computed (--recompute computes them again)."
        )
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)


def _segment_name(column: str, value: object) -> str:
    return f"{column}={'(missing)' if value is None else value}"


def _print_segments(result: MonitorResult) -> None:
    metric = result.metric
    rows: list[list[object]] = []
    for w in result.windows:
        start = w.start.strftime("%Y-%m-%d %H:%M")
        worst = w.worst_segments(metric, higher_is_better=result.higher_is_better)
        aside = "; ".join(w.set_aside(metric, result.min_segment_rows)) or "-"
        if not worst:
            why = "no labelled rows" if w.realized is None else "no segment measured"
            rows.append([start, why, "-", w.n_labelled, aside])
        for i, s in enumerate(worst):
            value = s.metrics[metric]
            rows.append(
                [
                    start if i == 0 else "",
                    _segment_name(s.column, s.segment),
                    _metric_cell(value.value, value.low, value.high),
                    s.n,
                    aside if i == 0 else "",
                ]
            )
    order = "lowest" if result.higher_is_better else "highest"
    console.print(
        table(
            f"worst segments by realized {metric} ({order} first; "
            f"{', '.join(result.segment_columns)})",
            [
                "start",
                "segment",
                f"realized {metric}",
                "labelled",
                f"skipped: fewer than {result.min_segment_rows} labelled rows (count), or why",
            ],
            rows,
        )
    )


def _print_multivariate(result: MonitorResult) -> None:
    rows: list[list[object]] = []
    for w in result.windows:
        start = w.start.strftime("%Y-%m-%d %H:%M")
        found = w.multivariate
        if found is None:
            rows.append([start, w.n, "-", "-", "-", w.multivariate_skipped or "-"])
            continue
        top = ", ".join(f"{name} ({share:.2f})" for name, share in w.separating())
        rows.append(
            [
                start,
                f"{found.n_current} / {found.n_reference}",
                f"{found.auc:.3f}",
                f"{found.threshold:.3f}",
                "yes" if found.drifted else "no",
                top or "-",
            ]
        )
    console.print(
        table(
            "multivariate drift: a classifier telling each window from the model's held-out rows",
            [
                "start",
                "rows (window / reference)",
                "AUC",
                "threshold",
                "drifted",
                "separating features (share of gain)",
            ],
            rows,
        )
    )
