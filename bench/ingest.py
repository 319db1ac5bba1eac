"""Ingest-and-validate throughput, on rows resampled from the NYC flights of 2013.

Builds the quickstart's feature rows (``flight_events``: carrier, route, distance,
schedule, the origin's weather by as-of join), resamples them with replacement
(seeded) to ``--rows`` rows with fresh unique ``flight_id``s, and writes three
batches under bench/.work/: A (Parquet), B (Parquet and CSV) and C (Parquet, a
third resample with 1% of its rows made bad). Then, through the public API (``Project.ingest`` on a
fresh ``Store`` with the quickstart spec), each round measures:

* first batch: A into an empty store (schema inference, validation, Parquet blob,
  metadata transaction);
* second batch: B after A, from Parquet and from CSV, validated against A's schema
  and A's ids; and C after A, so that the quarantine path is measured;
* ``validate_batch`` alone on the in-memory B and C (no earlier ids), and the same
  job done by pandera in its own venv (bench/.venvs/pandera), as a peer.

Stage times come from timing the public functions that ``Project.ingest`` and
``ingest`` call (wrapped by this script where those modules look them up; src is
not edited): read_source, frame_hash, infer_schema, load_dataset (the ids already
stored, for the duplicate check) and validate_batch. "store" is the rest:
encoding the clean rows to Parquet, writing the blob (fsync'd), the metadata
transaction and the quarantine rows.

    python bench/ingest.py                       # 1,000,000 rows, 3 rounds, with the peer
    python bench/ingest.py --rows 50000 --rounds 1 --no-peer
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from _common import ROOT, WORK, instrumented, median, peer_venv, print_machine, print_table

import setpoint.data.features
import setpoint.project
from setpoint.config.spec import ProjectSpec
from setpoint.data.schema import Schema, infer_schema
from setpoint.data.sources import read_source
from setpoint.data.validate import validate_batch
from setpoint.project import Project
from setpoint.quickstart.build import quickstart_spec
from setpoint.quickstart.flights import flight_events
from setpoint.registry import datasets
from setpoint.registry.datasets import IngestResult
from setpoint.settings import get_settings
from setpoint.store.workspace import Store

PEER_VENV = ROOT / "bench" / ".venvs" / "pandera"
PEER_SCRIPT = ROOT / "bench" / "_pandera_peer.py"
PEER_PACKAGES = ["pandera", "pandas", "pyarrow"]
# Stage -> the functions setpoint.registry.datasets.ingest calls for it (and "read"
# also Project.ingest's own read_source, wrapped in setpoint.project).
TIMED = {
    "read": ["read_source"],
    "hash": ["frame_hash"],
    "schema": ["infer_schema"],
    "known ids": ["load_dataset"],  # only reached through _known_ids during an ingest
    "validate": ["validate_batch"],
}
STAGES = [*TIMED, "store"]
REPEATS = 3  # runs of validate_batch alone (and of the peer) per round: they are short
FIRST = "first batch A (Parquet)"
SECOND = {
    "B.parquet": "second batch B (Parquet)",
    "B.csv": "second batch B (CSV)",
    "C.parquet": "second batch C, 1% bad (Parquet)",
}
Stages = dict[str, float]


# Data -----------------------------------------------------------------------------
def resample(events: pd.DataFrame, rows: int, rng: np.random.Generator, tag: str) -> pd.DataFrame:
    frame = events.iloc[rng.integers(0, len(events), rows)].reset_index(drop=True)
    frame["flight_id"] = [f"bench-{tag}-{i:08d}" for i in range(rows)]
    return frame


def make_bad(frame: pd.DataFrame, rng: np.random.Generator, share: float) -> pd.DataFrame:
    """A copy with ``share`` of its rows made bad, in four ways, a quarter each."""
    bad = frame.copy()
    n_bad = round(share * len(bad))
    picked = rng.choice(len(bad), size=n_bad, replace=False)
    out_of_range, unseen, null, duplicate = np.array_split(picked, 4)
    bad.loc[out_of_range, "distance"] = -1.0  # the schema's range is [0, 6000]
    bad.loc[unseen, "carrier"] = "ZZ"  # not a carrier of 2013
    bad.loc[null, "dest"] = None  # dest is not nullable
    # The id of another (untouched) row: one of the two is flagged as a duplicate.
    others = np.setdiff1d(np.arange(len(bad)), picked)
    sources = rng.choice(others, size=len(duplicate), replace=False)
    bad.loc[duplicate, "flight_id"] = bad["flight_id"].to_numpy()[sources]
    return bad


def build_inputs(rows: int, seed: int) -> dict[str, Path]:
    WORK.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    events = flight_events(cache=WORK / "cache")
    rng = np.random.default_rng(seed)
    a = resample(events, rows, rng, "a")
    b = resample(events, rows, rng, "b")
    c = make_bad(resample(events, rows, rng, "c"), rng, share=0.01)
    paths = {
        "A.parquet": WORK / f"flights-{rows}-a.parquet",
        "B.parquet": WORK / f"flights-{rows}-b.parquet",
        "B.csv": WORK / f"flights-{rows}-b.csv",
        "C.parquet": WORK / f"flights-{rows}-c-bad.parquet",
    }
    a.to_parquet(paths["A.parquet"], index=False)
    b.to_parquet(paths["B.parquet"], index=False)
    pacsv.write_csv(pa.Table.from_pandas(b, preserve_index=False), paths["B.csv"])
    c.to_parquet(paths["C.parquet"], index=False)
    took = time.perf_counter() - started
    print(f"\nInputs: {len(events):,} flight events resampled to {rows:,} rows ({took:.0f} s)")
    for name, path in paths.items():
        print(f"  {name:10} {path.relative_to(ROOT)}  {path.stat().st_size / 1e6:,.0f} MB")
    return paths


# Measuring ingest -------------------------------------------------------------------
def timed_ingest(project: Project, source: Path, rows: int) -> tuple[Stages, IngestResult]:
    seconds = dict.fromkeys(STAGES, 0.0)
    # Project.ingest may read a file itself and hand ingest() the frame.
    with (
        instrumented(setpoint.data.features, {"read": ["read_source"]}, seconds),
        instrumented(setpoint.project, {"read": ["read_source"]}, seconds),
        instrumented(datasets, TIMED, seconds),
    ):
        start = time.perf_counter()
        result = project.ingest(source)
        total = time.perf_counter() - start
    if not all(seconds[stage] for stage in ("read", "hash", "validate")):
        raise RuntimeError(f"a stage was not timed ({seconds}): has the ingest code moved?")
    if not result.created or result.dataset.n_rows + result.dataset.n_quarantined != rows:
        raise RuntimeError(f"{source.name} was not ingested whole: {result.dataset}")
    seconds["store"] = total - sum(seconds.values())
    seconds["total"] = total
    return seconds, result


def ingest_round(
    spec: ProjectSpec, paths: dict[str, Path], rows: int, runs: dict[str, list[Stages]]
) -> IngestResult:
    """A into a fresh store, then one second batch; once per second batch."""
    bad_result: IngestResult | None = None
    for second in ("B.parquet", "B.csv", "C.parquet"):
        with tempfile.TemporaryDirectory(dir=WORK, prefix="store-") as tmp:
            project = Project(spec, Store.open(tmp), root=Path(tmp))
            stages, _ = timed_ingest(project, paths["A.parquet"], rows)
            runs[FIRST].append(stages)
            stages, result = timed_ingest(project, paths[second], rows)
            runs[SECOND[second]].append(stages)
            project.store.db.dispose()
        if second == "C.parquet":
            bad_result = result
        print(f"  {SECOND[second]}: {stages['total']:.1f} s", flush=True)
    if bad_result is None:
        raise RuntimeError("batch C was not ingested")
    return bad_result


# validate_batch alone, and the peer -----------------------------------------------------
def peer_checks(schema: Schema, spec: ProjectSpec) -> list[dict[str, Any]]:
    """What setpoint checks per row, in a form the peer script reads."""
    if spec.validation.range_slack:
        raise RuntimeError("the peer's ranges assume range_slack: 0, the quickstart's")
    return [
        {
            "name": c.name,
            "dtype": c.dtype,
            "nullable": c.nullable and c.name != schema.target,
            "min": c.min if c.kind == "numeric" else None,
            "max": c.max if c.kind == "numeric" else None,
            "categories": list(c.categories) if c.categories is not None else None,
            "unique": c.name == schema.entity,
        }
        for c in schema.columns
    ]


def peer_python(fresh: bool) -> Path | None:
    return peer_venv(
        PEER_VENV,
        PEER_PACKAGES,
        probe="import pandera.pandas, pyarrow",
        name="pandera",
        fresh=fresh,
    )


def run_peer(python: Path, checks: Path, files: list[Path]) -> dict[str, Any] | None:
    command = [str(python), str(PEER_SCRIPT), "--checks", str(checks), "--rounds", str(REPEATS)]
    command += [str(f) for f in files]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-5:]
        print("NOTE: the pandera peer failed; it is left out:\n  " + "\n  ".join(tail))
        return None
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def compare_validation(
    spec: ProjectSpec, paths: dict[str, Path], rows: int, rounds: int, python: Path | None
) -> None:
    """``validate_batch`` on in-memory B and C, then the peer on the same files, per round."""
    schema = infer_schema(read_source(paths["A.parquet"]), spec=spec)  # what ingesting A stores
    files = {"B (clean)": paths["B.parquet"], "C (1% bad)": paths["C.parquet"]}
    frames = {name: read_source(path) for name, path in files.items()}
    checks = WORK / "peer-checks.json"
    checks.write_text(json.dumps(peer_checks(schema, spec), indent=1))
    validate_batch(frames["B (clean)"], schema, policy=spec.validation)  # warm-up, untimed
    ours: dict[str, list[float]] = {name: [] for name in files}
    theirs: dict[str, list[float]] = {name: [] for name in files}
    bad: dict[str, list[str]] = {name: ["-", "-"] for name in files}
    versions: dict[str, str] = {}
    for number in range(rounds):
        print(f"\nvalidate_batch round {number + 1}/{rounds}", flush=True)
        for _ in range(REPEATS):
            for name, frame in frames.items():
                start = time.perf_counter()
                report = validate_batch(frame, schema, policy=spec.validation)
                ours[name].append(time.perf_counter() - start)
                bad[name][0] = f"{report.n_bad:,}"
        for name in files:
            print(f"  setpoint {name}: {seconds_list(ours[name][-REPEATS:])}, {bad[name][0]} bad")
        peer = None if python is None else run_peer(python, checks, list(files.values()))
        if peer is None:
            python = None  # failed once: not again
            continue
        versions = peer["versions"]
        for name, path in files.items():
            runs = peer["runs"][str(path)]
            theirs[name] += [run["seconds"] for run in runs]
            bad[name][1] = f"{runs[-1]['failing_rows']:,}"
            print(f"  pandera  {name}: {seconds_list(theirs[name][-REPEATS:])}, {bad[name][1]} bad")

    table = []
    for name in files:
        mine, peers = median(ours[name]), median(theirs[name])
        peer_cells = [f"{peers:.2f}", rate(rows, peers)] if theirs[name] else ["skipped", "-"]
        ratio = f"{peers / mine:.2f}" if theirs[name] else "-"
        table.append([name, f"{mine:.2f}", rate(rows, mine), *peer_cells, *bad[name], ratio])
    headers = ["batch", "setpoint s", "rows/s", "pandera s", "rows/s", "bad (setpoint)"]
    print_table(
        f"Validation alone, in memory, median of {rounds} x {REPEATS} runs ({rows:,} rows)",
        [*headers, "bad (pandera)", "pandera / setpoint"],
        table,
    )
    if versions:
        print("peer: " + ", ".join(f"{k} {v}" for k, v in versions.items()))


# Reporting ----------------------------------------------------------------------------
def seconds_list(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values) + " s"


def rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f}" if seconds > 0 else "-"


def print_ingest(runs: dict[str, list[Stages]], rows: int) -> None:
    columns = [*STAGES, "total"]
    medians = {
        name: {s: median([r[s] for r in got]) for s in columns} for name, got in runs.items()
    }
    print_table(
        f"Ingest, median seconds ({rows:,} rows per batch; n = runs)",
        ["ingest", *columns, "n"],
        [
            [name, *(f"{m[s]:.2f}" if m[s] else "-" for s in columns), str(len(runs[name]))]
            for name, m in medians.items()
        ],
    )
    print_table(
        "Ingest, rows/s per stage (rows / median seconds of the stage)",
        ["ingest", *columns],
        [[name, *(rate(rows, m[s]) for s in columns)] for name, m in medians.items()],
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per batch")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every measurement")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling")
    parser.add_argument("--no-peer", action="store_true", help="skip the pandera peer")
    parser.add_argument("--fresh-peer", action="store_true", help="recreate the peer venv")
    args = parser.parse_args()
    if args.rows < 1000 or args.rounds < 1:
        parser.error("--rows must be at least 1000 and --rounds at least 1")

    print(f"$ python bench/ingest.py {' '.join(sys.argv[1:])}".rstrip())
    print_machine(["setpoint", "pandas", "pyarrow", "numpy"])
    spec = quickstart_spec()
    paths = build_inputs(args.rows, args.seed)
    metadata_on = "SETPOINT_DB_URL" if get_settings().db_url else "SQLite (the default)"
    print(f"Stores: fresh ones under {WORK.relative_to(ROOT)}/store-*, metadata on {metadata_on}")

    runs: dict[str, list[Stages]] = {FIRST: [], **{name: [] for name in SECOND.values()}}
    for number in range(args.rounds):
        print(f"\nIngest round {number + 1}/{args.rounds}", flush=True)
        bad = ingest_round(spec, paths, args.rows, runs)
    print_ingest(runs, args.rows)
    if bad.report is not None:
        found = {k: v for k, v in bad.report.counts.items() if v}
        print(f"\nBatch C: {bad.dataset.n_quarantined:,} rows quarantined; anomalies {found}")

    python = None if args.no_peer else peer_python(fresh=args.fresh_peer)
    compare_validation(spec, paths, args.rows, args.rounds, python)


if __name__ == "__main__":
    main()
