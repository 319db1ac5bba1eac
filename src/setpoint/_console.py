"""Console output shared by every command: errors, tables, progress."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

__all__ = ["console", "err_console", "fmt", "progress_bar", "table"]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def fmt(value: Any, digits: int = 4) -> str:
    """A compact, aligned rendering of a cell value."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:
            return "nan"
        return f"{value:,.{digits}f}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    out = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        out.add_column(column, justify="left" if column[:1].isalpha() else "right")
    for row in rows:
        out.add_row(*(fmt(cell) for cell in row))
    return out


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[str, float], None]]:
    """A progress bar fed by ``update(stage, fraction)`` callbacks."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=1.0)

        def update(stage: str, fraction: float) -> None:
            bar.update(task, completed=min(max(fraction, 0.0), 1.0), description=stage)

        yield update
        bar.update(task, completed=1.0)
