"""Options shared by several commands."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from setpoint.settings import declaration

if TYPE_CHECKING:
    from setpoint.project import Project

__all__ = ["ApiKey", "ProjectDir", "open_project"]

ProjectDir = Annotated[
    Path,
    typer.Option(
        "--dir",
        "-C",
        help="Project folder: where setpoint.yaml is.",
        file_okay=False,
    ),
]

# The environment name and the help come from the setting's one declaration.
_API_KEY = declaration("api_key")
ApiKey = Annotated[
    str | None,
    typer.Option("--api-key", envvar=_API_KEY.env, show_default=False, help=_API_KEY.help),
]


def open_project(directory: Path) -> Project:
    # Imported here so that '--help' does not pay for pandas and LightGBM.
    from setpoint.project import Project

    return Project.open(directory)
