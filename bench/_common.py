"""Helpers shared by the benchmark scripts: the machine, medians and plain tables."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import setpoint

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work"  # gitignored: generated data, stores, the cache


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def git_revision() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return sha + (" with uncommitted changes" if dirty else "")


def print_machine(packages: Sequence[str]) -> None:
    """Date, cores, CPU, load and versions: what every figure needs next to it."""
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    versions = []
    for name in packages:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    print(f"date       {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}")
    print(
        f"machine    {os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))}), {cpu_model()}"
    )
    print(f"load avg   {load} (1, 5, 15 min) at start")
    print(f"python     {platform.python_version()}; {', '.join(versions)}")
    source = Path(setpoint.__file__).resolve().parent.parent
    where = "this checkout" if source == ROOT / "src" else str(source)
    print(f"setpoint   from {where}; checkout at git {git_revision()}")


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A fixed-width table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        first, *rest = (str(c) for c in cells)
        return "  ".join(
            [first.ljust(widths[0]), *(c.rjust(w) for c, w in zip(rest, widths[1:], strict=True))]
        )

    print(f"\n{title}")
    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


@contextlib.contextmanager
def instrumented(
    module: ModuleType, stages: Mapping[str, Sequence[str]], seconds: dict[str, float]
) -> Iterator[None]:
    """Add the time spent in ``module``'s functions to ``seconds[stage]`` while inside.

    The functions are wrapped where ``module`` looks them up (its globals), so the
    code under test is timed as it runs, unedited; they are restored on exit.
    A name the module lacks is skipped (the code may have renamed a helper).
    """
    originals: dict[str, Callable[..., Any]] = {}

    def timed(stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                seconds[stage] += time.perf_counter() - start

        return wrapper

    for stage, names in stages.items():
        seconds.setdefault(stage, 0.0)
        for name in names:
            if not callable(getattr(module, name, None)):
                continue  # not called in this version of the code
            originals[name] = getattr(module, name)
            setattr(module, name, timed(stage, originals[name]))
    try:
        yield
    finally:
        for name, function in originals.items():
            setattr(module, name, function)


def peer_venv(
    venv: Path, packages: Sequence[str], *, probe: str, name: str, fresh: bool
) -> Path | None:
    """A peer's venv python, made (with ``packages`` installed) if ``probe`` fails in it.

    None, with a note saying why, when it cannot be made: the benchmark then runs
    setpoint alone rather than failing.
    """
    import sys

    python = venv / "bin" / "python"
    check = [str(python), "-c", probe]
    if not fresh and python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    where = venv.relative_to(ROOT) if venv.is_relative_to(ROOT) else venv
    print(f"\nCreating the peer venv {where}: pip install {' '.join(packages)}", flush=True)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", *packages],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            print(f"NOTE: the {name} peer is skipped: {' '.join(step[:4])} failed:")
            print("  " + "\n  ".join(tail))
            return None
    return python
