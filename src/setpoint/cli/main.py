"""The root ``setpoint`` command and its top-level commands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from setpoint._console import console, err_console, table
from setpoint.cli import autopilot as autopilot_commands
from setpoint.cli import data as data_commands
from setpoint.cli import keys as keys_commands
from setpoint.cli import model as model_commands
from setpoint.cli import monitor as monitor_commands
from setpoint.cli import serve as serve_commands
from setpoint.cli import traffic as traffic_commands
from setpoint.cli._options import ProjectDir, open_project
from setpoint.errors import SetpointError

__all__ = ["app", "main"]

app = typer.Typer(
    name="setpoint",
    help=(
        "Keep production machine-learning models at their quality setpoint.\n\n"
        "setpoint ingests and validates data, trains and evaluates models, registers them "
        "with their lineage and promotes a new model only when it beats the champion on "
        "evidence. Everything is stored in .setpoint/ next to setpoint.yaml unless "
        "SETPOINT_DB_URL or SETPOINT_ARTIFACTS_URL say otherwise.\n\n"
        "Start with 'setpoint quickstart' for a complete project on real data, or "
        "'setpoint init' to describe your own."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(data_commands.app, name="data")
app.add_typer(model_commands.app, name="model")
app.add_typer(keys_commands.app, name="keys")
serve_commands.register(app)
traffic_commands.register(app)
monitor_commands.register(app)
autopilot_commands.register(app)


@app.command("init")
def _init(
    project: Annotated[str, typer.Option(help="Project name: letters, digits, '_', '.', '-'.")],
    target: Annotated[str, typer.Option(help="Column to predict.")],
    task: Annotated[str, typer.Option(help="binary, multiclass or regression.")] = "binary",
    timestamp: Annotated[
        str | None, typer.Option(help="Event-time column; enables time-aware splits.")
    ] = None,
    entity: Annotated[str | None, typer.Option(help="Unique id column of each row.")] = None,
    source: Annotated[
        str | None, typer.Option(help="CSV or Parquet file to ingest as the 'events' dataset.")
    ] = None,
    directory: ProjectDir = Path(),
    force: Annotated[bool, typer.Option(help="Overwrite an existing setpoint.yaml.")] = False,
) -> None:
    """Write a starter setpoint.yaml, validated, with every section explained.

    Edit it, then run 'setpoint data ingest' and 'setpoint train'.
    """
    from setpoint.config.template import write_template

    path = write_template(
        directory,
        project=project,
        task=task,
        target=target,
        timestamp=timestamp,
        entity=entity,
        source=source,
        force=force,
    )
    console.print(f"Wrote {path}. Next: setpoint data ingest, then setpoint train.")


@app.command("quickstart")
def _quickstart(
    directory: Annotated[
        Path, typer.Option("--dir", help="Folder for the quickstart project.")
    ] = Path("setpoint-quickstart"),
) -> None:
    """Build a complete project on the real NYC flights 2013 data.

    Predicts whether a flight arrives 15 minutes or more late from what is known
    before departure. Ingests January to July month by month, validating each
    month against the schema learned from January; trains on January to June;
    tests on July; registers and promotes the first champion; prints a summary.
    No network and no configuration needed.
    """
    from setpoint.quickstart.build import run_quickstart

    run_quickstart(directory)


@app.command("train")
def _train(
    directory: ProjectDir = Path(),
    dataset: Annotated[str, typer.Option(help="Dataset to train on.")] = "events",
    version: Annotated[
        int | None, typer.Option(help="Dataset version (default: the newest).", min=1)
    ] = None,
    promote: Annotated[
        bool, typer.Option(help="Put the new version through the gate for 'champion'.")
    ] = True,
) -> None:
    """Train the spec's recipe, register the model with its lineage, and gate it.

    The data is split by time: train on the past, validate on a later slice
    (early stopping, calibration, threshold), test on the latest slice. The new
    version becomes champion only if the gate passes.
    """
    from setpoint._console import progress_bar
    from setpoint.cli.model import print_decision, print_metrics

    project = open_project(directory)
    with progress_bar("training") as update:
        outcome = project.train(dataset=dataset, version=version, promote=promote, progress=update)
    console.print(f"Registered {project.name}@{outcome.version.version}.")
    unused = outcome.version.lineage.get("features", {}).get("unused", {})
    if unused:
        # Said out loud: a column silently left out looks like a column used.
        left_out = "; ".join(f"{name} ({why})" for name, why in unused.items())
        console.print(f"Not trained on: {left_out}.", soft_wrap=True)
    print_metrics(outcome.version)
    print_decision(outcome.decision)


@app.command("events")
def _events(
    directory: ProjectDir = Path(),
    kind: Annotated[str | None, typer.Option(help="Only events of this kind.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.", min=1)] = 50,
) -> None:
    """The audit log: ingests, refusals, registrations, gate decisions, alias moves."""
    project = open_project(directory)
    rows = [
        (e.id, e.at.strftime("%Y-%m-%d %H:%M:%S"), e.kind, _summary(e.payload))
        for e in project.events(kind=kind, limit=limit)
    ]
    console.print(table(f"Events of {project.name}", ["id", "at (UTC)", "kind", "what"], rows))


@app.command("gc")
def _gc(
    directory: ProjectDir = Path(),
    yes: Annotated[
        bool, typer.Option("--yes", help="Remove the files listed (default: only list them).")
    ] = False,
) -> None:
    """List the artifact files that no model version or dataset batch references.

    They are left by a write that failed or was killed: a blob stored before its
    row, a temporary file of an interrupted write (older than an hour). Nothing is
    removed without --yes; a file any version or batch of any project in the store
    references is never removed.
    """
    from setpoint.registry.sweep import find_orphans, remove_orphans

    project = open_project(directory)
    orphans = remove_orphans(project.store) if yes else find_orphans(project.store)
    size = sum(item.size for item in orphans)
    where = project.store.artifacts.url
    if not orphans:
        console.print(f"No unreferenced file in {where}.")
        return
    rows = [
        (item.path, "blob" if item.sha256 else "temporary", f"{item.size:,}") for item in orphans
    ]
    console.print(table(f"Unreferenced files in {where}", ["path", "kind", "bytes"], rows))
    if yes:
        console.print(f"Removed {len(orphans)} file(s), {size:,} bytes.")
    else:
        console.print(
            f"{len(orphans)} file(s), {size:,} bytes; nothing was removed. "
            "Run 'setpoint gc --yes' to remove them.",
            soft_wrap=True,
        )


def _summary(payload: dict[str, object]) -> str:
    keys = (
        "name",
        "version",
        "alias",
        "kind",
        "passed",
        "n_rows",
        "n_quarantined",
        "job",
        "stage",
        "outcome",
        "reason",
        "reasons",
        "payload",
        "gate",
    )
    parts = [f"{k}={payload[k]}" for k in keys if k in payload]
    return ", ".join(parts)[:160]


def main() -> None:
    """Entry point: user errors print one clear line and exit 2, never a traceback."""
    try:
        app()
    except SetpointError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted; nothing half-written was kept.")
        sys.exit(130)
