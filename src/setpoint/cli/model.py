"""``setpoint model``: versions, lineage, aliases, promotion and rollback."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from setpoint._console import console, table
from setpoint.cli._options import ProjectDir, open_project

if TYPE_CHECKING:
    from setpoint.registry.gate import GateDecision
    from setpoint.registry.models import ModelVersion

__all__ = ["app", "print_decision", "print_metrics"]

app = typer.Typer(
    help="Registered model versions, their lineage and aliases; promotion and rollback.",
    no_args_is_help=True,
)
alias_app = typer.Typer(
    help=(
        "Point an alias (shadow, canary, or one of your own) at a version, or remove it. "
        "'setpoint model list' shows who holds which alias; 'champion' moves only through "
        "'setpoint model promote' and 'setpoint model rollback'."
    ),
    no_args_is_help=True,
)
app.add_typer(alias_app, name="alias")

# Moved only by the gate (promote) and by rollback, so that every change is judged.
_GATED = "champion"


@app.command("list")
def _list(directory: ProjectDir = Path()) -> None:
    """Every registered version, its primary metric on test, and its aliases."""
    project = open_project(directory)
    held: dict[int, list[str]] = {}
    for alias, number in project.aliases().items():
        held.setdefault(number, []).append(alias)
    metric = project.spec.metric
    rows = [
        (
            v.version,
            v.created_at.strftime("%Y-%m-%d %H:%M"),
            v.lineage.get("dataset", {}).get("version"),
            v.test_metric(metric),
            ", ".join(held.get(v.version, [])),
        )
        for v in project.versions()
    ]
    title = f"Models of {project.name}"
    console.print(
        table(title, ["version", "created (UTC)", "data v", f"test {metric}", "aliases"], rows)
    )


@app.command("show")
def _show(
    version: Annotated[int, typer.Argument(help="Model version number.", min=1)],
    directory: ProjectDir = Path(),
) -> None:
    """One version: lineage (data, schema, recipe, code, packages), metrics and artifacts."""
    from setpoint.registry.models import get_version

    project = open_project(directory)
    v = get_version(project.store, project=project.name, version=version)
    lineage = v.lineage
    rows = [
        ("kind", v.kind),
        ("created", v.created_at.isoformat()),
        ("dataset", f"{lineage['dataset']['name']} v{lineage['dataset']['version']}"),
        ("rows", lineage["dataset"]["rows"]),
        ("schema", f"v{lineage['schema_version']}"),
        ("family", lineage["recipe"]["family"]),
        ("git", lineage["code"].get("git_sha") or "not a git checkout"),
        *((f"package {k}", val) for k, val in lineage["packages"].items()),
        *((f"artifact {k}", sha) for k, sha in v.artifacts.items()),
    ]
    console.print(table(f"{project.name}@{version}", ["field", "value"], rows))
    print_metrics(v)


@app.command("promote")
def _promote(
    version: Annotated[int, typer.Argument(help="Version to promote to champion.", min=1)],
    directory: ProjectDir = Path(),
    reason: Annotated[str, typer.Option(help="Why, for the audit log.")] = "",
    force: Annotated[
        bool, typer.Option(help="Promote even if the gate fails; the override is recorded.")
    ] = False,
) -> None:
    """Put a version through the promotion gate against the current champion."""
    project = open_project(directory)
    decision = project.promote(version, reason=reason, force=force)
    print_decision(decision)
    if force and not decision.passed:
        console.print(
            f"Promoted anyway (forced): champion is {project.name}@{version}; "
            "the override is in 'setpoint model history'."
        )


@app.command("rollback")
def _rollback(
    reason: Annotated[str, typer.Option(help="Why, for the audit log.")],
    directory: ProjectDir = Path(),
) -> None:
    """Give 'champion' back to the version that held it before."""
    project = open_project(directory)
    previous = project.rollback(reason=reason)
    console.print(f"champion is {project.name}@{previous} again.")


@app.command("history")
def _history(
    directory: ProjectDir = Path(),
    alias: Annotated[str | None, typer.Option(help="Only this alias.")] = None,
) -> None:
    """Which version held which alias, when, what moved it (kind), and why."""
    from setpoint.registry.aliases import alias_history_of

    project = open_project(directory)
    rows = [
        (
            c.at.strftime("%Y-%m-%d %H:%M:%S"),
            c.alias,
            c.version,
            c.previous_version,
            c.kind.value,
            c.actor,
            c.reason,
        )
        for c in alias_history_of(project.store.db, project=project.name, alias=alias)
    ]
    columns = ["at (UTC)", "alias", "version", "previous", "kind", "by", "reason"]
    console.print(table(f"Alias history of {project.name}", columns, rows))


@alias_app.command("set")
def _alias_set(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Alias, e.g. shadow or canary.")],
    version: Annotated[
        int, typer.Argument(metavar="VERSION", help="Version the alias points at.", min=1)
    ],
    directory: ProjectDir = Path(),
    reason: Annotated[str, typer.Option(help="Why, for the audit log.")] = "",
) -> None:
    """Point an alias at a version; a running server follows within its reload interval."""
    from setpoint.registry.aliases import kind_by_hand, set_alias

    _check_alias(name)
    project = open_project(directory)
    with project.store.db.write() as conn:
        change = set_alias(
            conn,
            project=project.name,
            alias=name,
            version=version,
            kind=kind_by_hand(name, version),
            reason=reason or "set by hand",
            actor="user",
        )
    previous = change.previous_version
    was = f" (was {previous})" if previous is not None else ""
    console.print(f"{name} is {project.name}@{version}{was}.")


@alias_app.command("unset")
def _alias_unset(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Alias to remove.")],
    directory: ProjectDir = Path(),
    reason: Annotated[str, typer.Option(help="Why, for the audit log.")] = "",
) -> None:
    """Remove an alias; its history stays in 'setpoint model history'."""
    from setpoint.errors import NotFoundError
    from setpoint.registry.aliases import AliasKind, get_alias_in, set_alias

    _check_alias(name)
    project = open_project(directory)
    with project.store.db.write() as conn:
        previous = get_alias_in(conn, project=project.name, alias=name)
        if previous is None:
            raise NotFoundError(
                kind="alias", name=name, hint="'setpoint model list' shows the aliases held."
            )
        set_alias(
            conn,
            project=project.name,
            alias=name,
            version=None,
            kind=AliasKind.CLEAR,
            reason=reason or "unset by hand",
            actor="user",
        )
    console.print(f"{name} removed (it pointed at {project.name}@{previous}).")


def _check_alias(name: str) -> None:
    if name == _GATED:
        raise typer.BadParameter(
            "'champion' moves only through 'setpoint model promote VERSION' (which puts the "
            "version through the gate) and 'setpoint model rollback'",
            param_hint="'NAME'",
        )
    if not (name.isidentifier() and len(name) <= 64):
        raise typer.BadParameter(
            f"expected a name of letters, digits and '_' (not starting with a digit), "
            f"at most 64 characters; got {name!r}",
            param_hint="'NAME'",
        )


def print_metrics(version: ModelVersion) -> None:
    slices = version.slices
    names = sorted({k for m in slices.values() for k in m})
    rows = [(name, *(slices[s].get(name) for s in slices)) for name in names]
    console.print(table("Metrics", ["metric", *slices], rows))


def print_decision(decision: GateDecision) -> None:
    verdict = "[green]passed[/]" if decision.passed else "[red]not passed[/]"
    console.print(f"Gate for version {decision.challenger}: {verdict}")
    for reason in decision.reasons:
        console.print(f"  - {reason}")
