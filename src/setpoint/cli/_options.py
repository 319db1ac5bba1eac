"""Options shared by several commands."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from setpoint.project import Project

__all__ = ["ProjectDir", "open_project"]

ProjectDir = Annotated[
    Path,
    typer.Option(
        "--dir",
        "-C",
        help="Project folder: where setpoint.yaml is.",
        file_okay=False,
    ),
]


def open_project(directory: Path) -> Project:
    # Imported here so that '--help' does not pay for pandas and LightGBM.
    from setpoint.project import Project

    return Project.open(directory)
