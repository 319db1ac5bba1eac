"""``setpoint simulate`` end to end: the flights, the replay, and what it writes."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from setpoint._json import jsonable
from setpoint.config.durations import parse_duration
from setpoint.config.loader import load_spec
from setpoint.config.spec import ProjectSpec
from setpoint.errors import ConfigError
from setpoint.quickstart.build import quickstart_spec
from setpoint.quickstart.flights import flight_events
from setpoint.quickstart.strategies import STRATEGIES, Replay, ReplayResult
from setpoint.quickstart.svg_chart import weekly_chart

__all__ = ["markdown", "run_simulation"]

NEW_YORK = ZoneInfo("America/New_York")


def _local(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=NEW_YORK)


def _spec(path: Path | None) -> ProjectSpec:
    spec = quickstart_spec() if path is None else load_spec(path)
    if spec.autopilot is None:
        raise ConfigError(f"{path}: the spec has no 'autopilot' section to replay.", path=str(path))
    if (spec.task.value, spec.target, spec.timestamp) != ("binary", "late", "scheduled_at"):
        raise ConfigError(
            f"{path}: simulate replays the flights quickstart; its spec must predict 'late' "
            "(binary) with the timestamp 'scheduled_at'.",
            path=str(path),
        )
    return spec


def run_simulation(
    out: Path,
    *,
    start: datetime,
    end: datetime,
    label_delay: str = "6h",
    spec_path: Path | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> tuple[ReplayResult, list[Path]]:
    """Replay the flights from ``start`` to ``end``; write JSON, Markdown and SVG to ``out``."""
    spec = _spec(spec_path)
    delay = parse_duration(label_delay)
    out.mkdir(parents=True, exist_ok=True)
    events = flight_events(cache=out / ".cache")
    roles = {spec.target, spec.timestamp, spec.entity}
    numeric = [c for c in events.columns if c not in roles and events[c].dtype.kind in "fiub"]
    categorical = [c for c in events.columns if c not in roles and c not in numeric]
    replay = Replay(
        spec,
        events,
        start=_local(start),
        end=_local(end),
        label_delay=delay,
        numeric=numeric,
        categorical=categorical,
        # Fixed, so that the figures repeat on any machine: LightGBM's sums (and so
        # its trees) depend on how many threads add them up.
        num_threads=2,
    )
    result = replay.run(progress=progress)
    document = {
        "metric": result.metric,
        "from": _local(start).isoformat(),
        "to": _local(end).isoformat(),
        "label_delay": label_delay,
        "policy": spec.autopilot.model_dump(mode="json") if spec.autopilot else None,
        "summary": result.summary(),
        "retrains": result.retrains,
        "train_seconds": result.train_seconds,
        "seconds": result.seconds,
        "weeks": result.weeks,
        "events": result.events,
    }
    written = [out / "simulation.json", out / "simulation.md", out / "simulation.svg"]
    written[0].write_text(json.dumps(jsonable(document), indent=1) + "\n", encoding="utf-8")
    written[1].write_text(markdown(result), encoding="utf-8")
    promotions = [e["at"] for e in result.events if e["kind"] == "promote"]
    chart = weekly_chart(
        result.weeks,
        metric=result.metric,
        title=f"Weekly {result.metric} of the flights, {start:%Y-%m-%d} to {end:%Y-%m-%d}",
        markers={"autopilot": promotions},
        marker_label="promotions",
    )
    written[2].write_text(chart, encoding="utf-8")
    return result, written


def markdown(result: ReplayResult) -> str:
    """The per-week table and the summary, as Markdown for the docs."""
    names = STRATEGIES
    lines = [
        f"| week | flights | late share | {' | '.join(names)} |",
        "|---|---:|---:|" + "---:|" * len(names),
    ]
    for week in result.weeks:
        values = " | ".join(f"{week[s]:.4f}" for s in names if week.get(s) is not None)
        lines.append(
            f"| {week['week']} | {week['flights']:,} | {week['positive_share']:.3f} | {values} |"
        )
    summary = result.summary()
    lines += [
        "",
        f"| strategy | mean weekly {result.metric} | retrains | training s |",
        "|---|---:|---:|---:|",
    ]
    for name in names:
        lines.append(
            f"| {name} | {summary['mean'][name]:.4f} | {result.retrains[name]} | "
            f"{result.train_seconds[name]:.1f} |"
        )
    lines += [
        "",
        f"Recovered: {summary['recovered']:.0%} of weekly's gain "
        f"({summary['autopilot_gain']:+.4f} of {summary['weekly_gain']:+.4f}), with "
        f"{summary['retrain_share']:.0%} of its retrains.",
    ]
    return "\n".join(lines) + "\n"
