"""``setpoint data``: ingest, list, schema and quarantine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from setpoint._console import console, fmt, table
from setpoint.cli._options import ProjectDir, open_project

__all__ = ["app"]

app = typer.Typer(
    help="Ingest and validate data; inspect datasets, the schema and quarantined rows.",
    no_args_is_help=True,
)


@app.command("ingest")
def _ingest(
    source: Annotated[
        str | None,
        typer.Argument(help="CSV or Parquet file. Default: the spec's sources.<name>."),
    ] = None,
    directory: ProjectDir = Path(),
    name: Annotated[str, typer.Option(help="Dataset to append the batch to.")] = "events",
    new_schema: Annotated[
        bool, typer.Option(help="Infer a new schema version from this batch.")
    ] = False,
) -> None:
    """Validate a batch against the schema and store it as a new dataset version.

    The first batch infers the schema. Bad rows go to quarantine with their
    reasons; a batch whose bad share exceeds validation.max_bad_share is
    refused whole and nothing is stored. The same content twice is one version.
    """
    from setpoint.errors import BatchRefusedError

    project = open_project(directory)
    if source is not None and directory.resolve() != Path.cwd().resolve():
        # A path typed in a shell is relative to the shell's folder, not to --dir.
        source = str(Path.cwd() / Path(source).expanduser())
    try:
        result = project.ingest(source, name=name, new_schema=new_schema)
    except BatchRefusedError as exc:
        _print_counts(exc.report.counts)
        raise
    d = result.dataset
    if not result.created:
        console.print(f"Already ingested as {d.name} v{d.version}; nothing new was stored.")
        return
    console.print(
        f"Stored {d.name} v{d.version}: {d.n_rows:,} rows, {d.n_quarantined:,} quarantined "
        f"(schema v{d.schema_version})."
    )
    if result.report is not None:
        _print_counts(result.report.counts)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", soft_wrap=True)


def _print_counts(counts: dict[str, int]) -> None:
    rows = sorted(((k, n) for k, n in counts.items() if n), key=lambda kv: -kv[1])
    if rows:
        console.print(table("Anomalies", ["kind", "rows"], rows))


@app.command("list")
def _list(directory: ProjectDir = Path()) -> None:
    """Every dataset batch: version, rows, quarantined rows, source and content hash."""
    from setpoint.registry.datasets import list_datasets

    project = open_project(directory)
    rows = [
        (
            d.name,
            d.version,
            d.n_rows,
            d.n_quarantined,
            d.schema_version,
            d.content_hash[:12],
            d.source,
        )
        for d in list_datasets(project.store, project=project.name)
    ]
    columns = ["name", "version", "rows", "quarantined", "schema", "hash", "source"]
    console.print(table(f"Datasets of {project.name}", columns, rows))


@app.command("schema")
def _schema(directory: ProjectDir = Path()) -> None:
    """The newest schema: each column's kind, range or categories, and null rate."""
    from setpoint.registry.datasets import latest_schema

    project = open_project(directory)
    schema = latest_schema(project.store, project=project.name)
    if schema is None:
        console.print("No schema yet: ingest a first batch.")
        return
    rows = []
    for column in schema.columns:
        if column.categories is not None:
            domain = f"{len(column.categories)} categories"
        elif column.min is not None or column.max is not None:
            domain = f"[{fmt(column.min)}, {fmt(column.max)}]"
        else:
            domain = "-"
        unique = "yes" if column.unique else "no"
        rows.append((column.name, column.kind, domain, column.null_rate, unique))
    title = f"Schema v{schema.version} of {project.name}"
    console.print(table(title, ["column", "kind", "domain", "null rate", "unique"], rows))
    for note in schema.notes:
        console.print(f"[yellow]note:[/] {note}", soft_wrap=True)


@app.command("quarantine")
def _quarantine(
    directory: ProjectDir = Path(),
    dataset: Annotated[str | None, typer.Option(help="Only this dataset.")] = None,
    limit: Annotated[int, typer.Option(help="Rows to show.", min=1)] = 20,
    export: Annotated[
        Path | None, typer.Option(help="Write every quarantined row to this .csv or .parquet.")
    ] = None,
) -> None:
    """Rows that failed validation, with their reasons. Nothing is dropped silently."""
    from setpoint.registry.quarantine import export_quarantine, list_quarantine, quarantine_counts

    if export is not None and export.suffix.lower() not in (".csv", ".parquet"):
        raise typer.BadParameter(
            f"{str(export)!r} must end in .csv or .parquet", param_hint="'--export'"
        )
    project = open_project(directory)
    if export is not None:
        n = export_quarantine(project.store, export, project=project.name, dataset=dataset)
        console.print(f"Wrote {n:,} quarantined rows to {export}.")
        return
    _print_counts(quarantine_counts(project.store, project=project.name))
    frame = list_quarantine(project.store, project=project.name, dataset=dataset, limit=limit)
    if frame.empty:
        console.print("No quarantined rows.")
        return
    rows = frame[["dataset", "row_number", "reasons"]].itertuples(index=False)
    console.print(table("Quarantined rows", ["dataset", "row", "reasons"], rows))
