"""``setpoint predict`` and ``setpoint replay``: traffic for a running ``setpoint serve``."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from setpoint._console import console, err_console, fmt, table
from setpoint.cli._options import ApiKey, ProjectDir
from setpoint.client import DEFAULT_URL
from setpoint.errors import InvalidParameterError, ServerError, SourceError
from setpoint.traffic.replay import MAX_CONCURRENCY

if TYPE_CHECKING:
    from setpoint.client import Client
    from setpoint.traffic.records import ReplayColumns
    from setpoint.traffic.replay import ReplayStats

__all__ = ["register"]

Url = Annotated[str, typer.Option("--url", help="Base URL of the setpoint server.")]


# Where 'setpoint quickstart' leaves the flights it never trained on.
_HELD_BACK = Path("data") / "flights-2013-08-12.parquet"


class _Format(StrEnum):
    TABLE = "table"
    JSON = "json"


def register(app: typer.Typer) -> None:
    """Add ``predict`` and ``replay`` to the root ``setpoint`` command."""
    app.command("predict")(_predict)
    app.command("replay")(_replay)


def _predict(
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            dir_okay=False,
            help='Records in a .json (an object, a list or {"records": [...]}), .jsonl, '
            ".csv or .parquet file.",
        ),
    ] = None,
    json_text: Annotated[
        str | None, typer.Option("--json", help="Records as JSON text: one object or a list.")
    ] = None,
    explain: Annotated[
        bool, typer.Option(help="Add each prediction's top feature contributions.")
    ] = False,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    output: Annotated[_Format, typer.Option("--format", help="table or json.")] = _Format.TABLE,
) -> None:
    """Score records with the served champion and print the predictions.

    Give the records with --file or --json, e.g.
    setpoint predict --json '{"carrier": "UA", "distance": 1400}'.
    """
    from setpoint.traffic.records import parse_records, read_records

    if (file is None) == (json_text is None):
        raise typer.BadParameter(
            "give the records with exactly one of --file or --json; got "
            + ("both" if file is not None else "neither"),
            param_hint="'--file' / '--json'",
        )
    if file is not None:
        _check_suffix(file, "--file")
        records = read_records(file)
    else:
        records = parse_records(str(json_text), source="--json")
    with _client(url, api_key) as client:
        answer = client.predict(records, explain=explain)
    if output is _Format.JSON:
        body = {
            "request_id": answer.request_id,
            "model_version": answer.model_version,
            "predictions": answer.predictions,
        }
        typer.echo(json.dumps(body, indent=2))
        return
    keys = list(dict.fromkeys(k for p in answer.predictions for k in p))
    rows = [(i, *(_cell(p.get(k)) for k in keys)) for i, p in enumerate(answer.predictions)]
    title = f"{len(rows)} predictions of model v{answer.model_version}"
    console.print(table(title, ["record", *keys], rows))
    console.print(f"request id: {answer.request_id}")


def _replay(
    directory: ProjectDir = Path(),
    start: Annotated[
        str | None,
        typer.Option("--from", help="First time to send (ISO 8601; UTC unless it has an offset)."),
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="Send the records before this time (exclusive).")
    ] = None,
    rate: Annotated[
        float, typer.Option(help="Records per second; 0 sends as fast as the server answers.")
    ] = 50.0,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            dir_okay=False,
            help="Records in a .parquet, .csv, .json or .jsonl file "
            f"(default: the quickstart's held-back {_HELD_BACK}).",
        ),
    ] = None,
    batch: Annotated[int, typer.Option(min=1, help="Records per request.")] = 1,
    concurrency: Annotated[
        int, typer.Option(min=1, max=MAX_CONCURRENCY, help="Requests in flight at once.")
    ] = 4,
    label_delay: Annotated[
        str,
        typer.Option(help="How long after a record's time its outcome is known: 30m, 6h, 1d, 0."),
    ] = "6h",
    feedback: Annotated[
        bool, typer.Option("--feedback/--no-feedback", help="Post the true outcomes.")
    ] = True,
    feedback_rate: Annotated[
        float, typer.Option(help="Outcomes per second; 0 posts them as fast as they come due.")
    ] = 0.0,
    limit: Annotated[int | None, typer.Option(min=1, help="Send at most this many.")] = None,
    time_column: Annotated[
        str | None,
        typer.Option(
            "--time-column",
            show_default=False,
            help="Column of each record's time (default: the spec's timestamp).",
        ),
    ] = None,
    label_column: Annotated[
        str | None,
        typer.Option(
            "--label-column",
            show_default=False,
            help="Column of the true outcomes, posted as feedback (default: the spec's target).",
        ),
    ] = None,
    entity_column: Annotated[
        str | None,
        typer.Option(
            "--entity-column",
            show_default=False,
            help="Column of each record's entity id, checked to be there "
            "(default: the spec's entity).",
        ),
    ] = None,
) -> None:
    """Replay held-back records as live traffic, in time order, then their outcomes.

    Reads data/flights-2013-08-12.parquet of the project folder (the flights of August to
    December 2013 that the quickstart never trained on) or --file, sends the records
    with a time in [--from, --to) at --rate records per second, and posts each
    one's true outcome as feedback once the replay clock (the time of the
    records being sent) has passed its time plus --label-delay. The time and
    outcome columns are the spec's (setpoint.yaml) unless --time-column and
    --label-column name them. Prints a summary: records sent, errors by kind,
    feedback stored, rate and latency.
    """
    from setpoint.config.durations import parse_duration
    from setpoint.traffic.records import plan_replay
    from setpoint.traffic.replay import replay

    for flag, value, what in (
        ("--rate", rate, "records"),
        ("--feedback-rate", feedback_rate, "outcomes"),
    ):
        if not (math.isfinite(value) and value >= 0):
            raise typer.BadParameter(
                f"expected {what} per second, a number >= 0 (0 = no limit); got {value}",
                param_hint=f"'{flag}'",
            )
    try:
        delay = parse_duration(label_delay)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--label-delay'") from None
    low, high = _when(start, "--from"), _when(end, "--to")
    if low is not None and high is not None and low >= high:
        raise typer.BadParameter(
            f"--from must be before --to; got --from {start} and --to {end}",
            param_hint="'--from' / '--to'",
        )
    path = file if file is not None else directory / _HELD_BACK
    _check_suffix(path, "--file")
    if not path.is_file():
        hint = (
            ""
            if file is not None
            else ". 'setpoint quickstart' writes the held-back flights there; or pass --file."
        )
        raise SourceError(f"no such file{hint}", source=str(path))
    columns = _replay_columns(
        directory, time=time_column, label=label_column, entity=entity_column, feedback=feedback
    )
    plan = plan_replay(path, columns=columns, start=low, end=high, limit=limit)
    for note in plan.notes:
        err_console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    with _client(url, api_key) as client:
        _check_server(client)
        console.print(
            f"Replaying {len(plan.records):,} records of {path} to {client.base_url} "
            f"({plan.first.isoformat()} to {plan.last.isoformat()})."
        )
        columns_shown = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns_shown, console=err_console) as bar:
            task = bar.add_task("replaying", total=len(plan.records))
            stats = replay(
                client,
                plan,
                rate=rate,
                feedback_rate=feedback_rate,
                batch=batch,
                concurrency=concurrency,
                label_delay=delay,
                feedback=feedback,
                on_progress=lambda done: bar.update(task, completed=done),
            )
    _print_summary(stats, feedback=feedback and plan.labels is not None)
    if stats.aborted is not None:
        raise stats.aborted


def _replay_columns(
    directory: Path, *, time: str | None, label: str | None, entity: str | None, feedback: bool
) -> ReplayColumns:
    """The flags' columns, else the spec's; a missing one is named by its flag."""
    from setpoint.config.loader import SPEC_FILE, load_spec
    from setpoint.traffic.records import ReplayColumns

    spec_path = directory / SPEC_FILE
    spec = load_spec(spec_path) if spec_path.is_file() else None
    if spec is not None:
        time = spec.timestamp if time is None else time
        label = spec.target if label is None else label
        entity = spec.entity if entity is None else entity
    if time is None:
        why = f"{spec_path} names no 'timestamp'" if spec else f"there is no {spec_path}"
        raise typer.BadParameter(
            f"name the column of each record's time ({why})", param_hint="'--time-column'"
        )
    if label is None and feedback:
        raise typer.BadParameter(
            f"name the column of the true outcomes, or pass --no-feedback (there is no "
            f"{spec_path})",
            param_hint="'--label-column'",
        )
    if label is not None and label in (time, entity):
        role = "time" if label == time else "entity"
        raise typer.BadParameter(
            f"the outcome column {label!r} is also the {role} column", param_hint="'--label-column'"
        )
    try:
        return ReplayColumns(time=time, label=label, entity=entity)
    except InvalidParameterError as exc:
        flag = {"label": "--label-column", "entity": "--entity-column"}.get(exc.parameter)
        raise typer.BadParameter(str(exc), param_hint=f"'{flag or '--time-column'}'") from None


def _check_suffix(path: Path, flag: str) -> None:
    from setpoint.traffic.records import RECORD_SUFFIXES

    if path.suffix.lower() not in RECORD_SUFFIXES:
        raise typer.BadParameter(
            f"expected a file ending in {', '.join(RECORD_SUFFIXES)}; got {path.name!r}",
            param_hint=f"'{flag}'",
        )


def _client(url: str, api_key: str | None) -> Client:
    from setpoint.client import Client

    if not url.startswith(("http://", "https://")):
        raise typer.BadParameter(
            f"expected an http:// or https:// URL such as {DEFAULT_URL}; got {url!r}",
            param_hint="'--url'",
        )
    return Client(url, api_key=api_key)


def _check_server(client: Client) -> None:
    if not client.health():
        raise ServerError(
            f"Cannot reach the setpoint server at {client.base_url}. Start it with "
            "'setpoint serve' in the project folder, or pass --url.",
            url=client.base_url,
            status=None,
            kind="unreachable",
        )
    if not client.ready():
        raise ServerError(
            f"The setpoint server at {client.base_url} is up but not ready (GET /readyz): "
            "no champion is loaded yet, or it is shutting down.",
            url=client.base_url,
            status=503,
            kind="not_ready",
        )


def _when(text: str | None, flag: str) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(
            f"expected an ISO 8601 date or time such as 2013-08-01 or 2013-08-01T06:00-04:00; "
            f"got {text!r}",
            param_hint=f"'{flag}'",
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _cell(value: Any) -> Any:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return ", ".join(f"{k}: {fmt(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "; ".join(
            " ".join(fmt(v) for v in item.values()) if isinstance(item, dict) else fmt(item)
            for item in value[:3]
        ) + ("; ..." if len(value) > 3 else "")
    return value


def _print_summary(stats: ReplayStats, *, feedback: bool) -> None:
    rows: list[tuple[str, Any]] = [
        ("records sent", stats.sent),
        ("answered ok", stats.ok),
        *((f"errors: {kind}", n) for kind, n in stats.errors.most_common()),
        ("rate (records/s)", stats.rate),
        ("latency p50 (ms)", stats.latency(0.5)),
        ("latency p99 (ms)", stats.latency(0.99)),
    ]
    if feedback:
        rows += [("feedback stored", stats.stored), ("feedback duplicates", stats.duplicates)]
        rows += [(f"feedback errors: {k}", n) for k, n in stats.feedback_errors.most_common()]
    console.print(table("Replay", ["what", "value"], rows))
    for kind, message in stats.examples.items():
        console.print(f"[yellow]first {kind} error:[/] {message}", soft_wrap=True)
