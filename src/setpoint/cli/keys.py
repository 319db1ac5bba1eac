"""``setpoint keys``: the API keys of ``setpoint serve``, made once and shown once."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from setpoint._console import console, err_console, table
from setpoint.cli._options import ProjectDir, open_project

__all__ = ["app"]

app = typer.Typer(
    help=(
        "API keys for the server's admin endpoints (and for predict and feedback when "
        "serving.predict_auth or serving.feedback_auth is key). A key is shown once; "
        "only its sha256 is stored."
    ),
    no_args_is_help=True,
)

KeyName = Annotated[
    str,
    typer.Argument(
        metavar="NAME", help="A name for the key: who or what uses it, e.g. ci or dashboard."
    ),
]


class _Scope(StrEnum):
    admin = "admin"
    feedback = "feedback"


@app.command("create")
def _create(
    name: KeyName,
    directory: ProjectDir = Path(),
    scope: Annotated[
        _Scope,
        typer.Option(
            help=(
                "admin: every keyed endpoint (promote, rollback, reload, predict, feedback). "
                "feedback: POST /v1/feedback only, for a label pipeline."
            ),
        ),
    ] = _Scope.admin,
) -> None:
    """Make a key and print it. Copy it now: it cannot be shown again.

    The key alone goes to standard output (KEY=$(setpoint keys create ci)); the
    note goes to standard error. Send it as 'Authorization: Bearer <key>', or
    set SETPOINT_API_KEY for 'setpoint predict' and 'setpoint replay'.
    """
    from setpoint.registry.api_keys import create_key

    project = open_project(directory)
    key = create_key(project.store.db, name=name, scope=scope.value)
    typer.echo(key)
    err_console.print(
        f"Created {scope.value} API key {name!r}. This is the only time it is shown: "
        "setpoint keeps only its sha256. Revoke it with 'setpoint keys revoke NAME'.",
        soft_wrap=True,
    )


@app.command("list")
def _list(directory: ProjectDir = Path()) -> None:
    """Every key by name, with when it was made and revoked; never the key itself."""
    from setpoint.registry.api_keys import list_keys

    project = open_project(directory)
    rows = [
        (
            k.name,
            k.scope,
            "revoked" if k.revoked_at is not None else "active",
            k.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            k.revoked_at.strftime("%Y-%m-%d %H:%M:%S") if k.revoked_at is not None else None,
        )
        for k in list_keys(project.store.db)
    ]
    if not rows:
        console.print("No API keys yet: make one with 'setpoint keys create NAME'.")
        return
    console.print(
        table("API keys", ["name", "scope", "status", "created (UTC)", "revoked (UTC)"], rows)
    )


@app.command("revoke")
def _revoke(name: KeyName, directory: ProjectDir = Path()) -> None:
    """Revoke a key: requests with it are refused (403) within seconds. The name stays taken."""
    from setpoint.registry.api_keys import revoke_key

    project = open_project(directory)
    revoke_key(project.store.db, name=name)
    console.print(f"Revoked API key {name!r}; a server refuses it within a few seconds.")
