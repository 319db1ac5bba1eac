"""``setpoint autopilot`` (the closed loop, and its status) and ``setpoint simulate``."""

from __future__ import annotations

import json
import logging
import signal
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from setpoint._console import console, fmt, progress_bar, table
from setpoint.cli._options import ProjectDir, open_project
from setpoint.errors import ConfigError, InvalidParameterError

__all__ = ["app", "register", "simulate"]

app = typer.Typer(
    help="The closed loop: retrain when a trigger trips, gate, shadow, promote, watch, roll back.",
    no_args_is_help=False,
)


@app.callback(invoke_without_command=True)
def _run(
    ctx: typer.Context,
    directory: ProjectDir = Path(),
    once: Annotated[bool, typer.Option(help="Make one pass and exit.")] = False,
    interval: Annotated[
        float | None,
        typer.Option(help="Seconds between passes (default: the policy's check_every).", min=0.1),
    ] = None,
) -> None:
    """Run the autopilot of the project until Ctrl+C (or one pass with --once).

    Each pass works on a due retrain job, or looks at the latest window of
    traffic and queues one when a trigger trips. Several processes may run it
    against one store: a job is taken under a lease, never twice.
    """
    if ctx.invoked_subcommand is not None:
        return
    from setpoint.autopilot.loop import Autopilot

    pilot = Autopilot(open_project(directory))
    if once:
        said = pilot.tick()
        console.print("\n".join(said) if said else "Nothing to do: no trigger tripped.")
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    every = interval or pilot.policy.check_every.total_seconds()
    console.print(
        f"Autopilot of {pilot.project.name} running as {pilot.owner}, a pass every {every:g} s; "
        "Ctrl+C stops."
    )
    try:
        pilot.run(stop=stop, interval=interval)
    except KeyboardInterrupt:
        stop.set()


@app.command("status")
def _status(directory: ProjectDir = Path()) -> None:
    """What the loop sees now, which triggers would fire, and its recent jobs."""
    from setpoint.autopilot.loop import RETRAIN, Autopilot
    from setpoint.autopilot.triggers import Guard
    from setpoint.registry import jobs
    from setpoint.store.tables import utcnow

    pilot = Autopilot(open_project(directory))
    now = utcnow()
    look = pilot.look(now)
    rows = []
    for trigger in pilot.triggers:
        trip = trigger.check(look)
        rows.append((trigger.name, "fires" if trip else "quiet", trip.reason if trip else ""))
    console.print(table(f"Triggers of {pilot.project.name}", ["trigger", "now", "why"], rows))
    console.print(
        f"champion's window: realized {fmt(look.realized)} on {look.labelled} labels, "
        f"estimated {fmt(look.estimated)}, test {fmt(look.expected)}; "
        f"{look.labels_since} labels since the last retrain"
    )
    blocked = Guard(pilot.policy, pilot.retrain_history()).blocked(now)
    console.print(f"guard: {blocked or 'a retrain may start now'}")
    found = jobs.list_jobs(pilot.project.store.db, project=pilot.project.name, limit=10)
    job_rows = [
        (
            job.id,
            job.created_at.strftime("%Y-%m-%d %H:%M"),
            job.status,
            job.stage or "-",
            job.state.get("version"),
            job.state.get("outcome", ""),
            "; ".join(job.payload.get("trips", []))[:80],
        )
        for job in found
        if job.kind == RETRAIN
    ]
    console.print(
        table(
            "Retrain jobs, newest first",
            ["job", "queued (UTC)", "status", "stage", "version", "outcome", "trigger"],
            job_rows,
        )
    )


def simulate(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the table, the plot and the JSON.")
    ] = Path("setpoint-simulation"),
    start: Annotated[
        str, typer.Option("--from", help="First day served; earlier flights train the start.")
    ] = "2013-04-01",
    end: Annotated[str, typer.Option("--to", help="Day after the last one served.")] = "2014-01-01",
    label_delay: Annotated[
        str, typer.Option(help="When a flight's outcome is known, after its departure.")
    ] = "6h",
    spec_path: Annotated[
        Path | None,
        typer.Option("--spec", help="A flights spec whose 'autopilot' policy to replay."),
    ] = None,
) -> None:
    """Replay the flights of 2013 day by day: static model vs autopilot vs weekly retraining.

    All three start from one model trained on what was labelled before --from.
    Static keeps it; weekly retrains every seven days and ships the result; the
    autopilot runs its policy (the quickstart's, or --spec's). Prints the PR-AUC
    of each per week, the retrains and the training time, and writes a plot.
    """
    from setpoint.config.durations import parse_duration
    from setpoint.quickstart.simulate import run_simulation

    try:
        first = datetime.fromisoformat(start)
        last = datetime.fromisoformat(end)
    except ValueError as exc:
        raise InvalidParameterError(
            owner="simulate", parameter="--from/--to", expected="ISO dates", got=str(exc)
        ) from None
    try:
        parse_duration(label_delay)
    except ValueError as exc:
        raise InvalidParameterError(
            owner="simulate", parameter="--label-delay", expected="a duration", got=str(exc)
        ) from None
    if last - first < timedelta(days=14):
        raise InvalidParameterError(
            owner="simulate",
            parameter="--to",
            expected="at least 14 days after --from",
            got=end,
        )
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder.", path=str(out))
    with progress_bar("replaying") as update:
        result, written = run_simulation(
            out,
            start=first,
            end=last,
            label_delay=label_delay,
            spec_path=spec_path,
            progress=update,
        )
    _print(result)
    console.print(f"Wrote {', '.join(str(p) for p in written)}.")


def _print(result: Any) -> None:
    names = ("static", "weekly", "autopilot")
    rows = [
        (w["week"], w["flights"], w["positive_share"], *(w.get(s) for s in names))
        for w in result.weeks
    ]
    console.print(
        table(f"{result.metric} per week", ["week", "flights", "late share", *names], rows)
    )
    summary = result.summary()
    means = summary["mean"]
    console.print(
        table(
            "Summary",
            ["strategy", f"mean weekly {result.metric}", "retrains", "training s"],
            [(s, means[s], result.retrains[s], result.train_seconds[s]) for s in names],
        )
    )
    verdict = "met" if summary["target_met"] else "not met"
    console.print(
        f"The autopilot recovers {summary['recovered']:.0%} of weekly retraining's gain over the "
        f"static model ({summary['autopilot_gain']:+.4f} of {summary['weekly_gain']:+.4f}) with "
        f"{summary['retrain_share']:.0%} of its retrains. Target (>= 90% with <= 1/3): {verdict}."
    )
    console.print(json.dumps({"seconds": result.seconds}))


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="autopilot")
    root.command("simulate")(simulate)
