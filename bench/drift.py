"""Data drift on 1,000,000 current rows x 30 features against a 200,000-row reference.

Synthetic, seeded data: 20 numeric features drawn from a mix of distributions
(normal, log-normal, exponential, gamma, uniform, Student's t, beta, mixtures,
Poisson counts, a 4-value code, a 0/1 flag; some with missing values) and 10
categorical ones (2 to 1,000 categories, Zipf-like and flat). The current
window shifts some of them: a mean shift, a scale change, a moved range, a
reweighted mixture, a changed code mix, a changed category mix, a new category
in 8% of rows, a missing rate from 1% to 12%, and two changes meant to stay
under the thresholds (a 0.05-sd shift, a 10% wider spread).

Then, in one run:

* setpoint: ``Reference.build`` on the reference (once; timed apart), then
  ``detect_drift`` on the in-memory current frame: every statistic for every
  feature (PSI, Jensen-Shannon, chi-square, and for numbers Kolmogorov-Smirnov
  and Wasserstein on a 50,000-row subsample), the chosen tests, the
  Benjamini-Hochberg set and the dataset decision. One untimed warm-up, then
  ``--rounds`` timed runs.
* Evidently 0.7 ``DataDriftPreset`` (its default tests), in its own venv
  (bench/.venvs/evidently, ``evidently==0.7.23`` and ``pandas<3``, which
  Evidently 0.7 needs), on the same data read from Parquet files under
  bench/.work/.

It prints the times, their ratio, and every feature's test, score and decision
on both sides; decisions are compared where both sides chose the same test.

    python bench/drift.py                        # 1,000,000 x 30 vs 200,000, with the peer
    python bench/drift.py --rows 100000 --reference-rows 20000 --no-peer
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import ROOT, WORK, median, peer_venv, print_machine, print_table

from setpoint.stats.drift import DriftReport, detect_drift
from setpoint.stats.reference import Reference

PEER_VENV = ROOT / "bench" / ".venvs" / "evidently"
PEER_SCRIPT = ROOT / "bench" / "_evidently_peer.py"
PEER_PACKAGES = ["evidently==0.7.23", "pandas<3", "pyarrow"]
NUMERIC = [f"n{i:02d}" for i in range(20)]
CATEGORICAL = [f"c{i}" for i in range(10)]
# Evidently's display names of its tests, in setpoint's names.
EVIDENTLY_TESTS = {
    "Wasserstein distance (normed)": "wasserstein",
    "Jensen-Shannon distance": "jensen_shannon",
    "K-S p_value": "ks",
    "chi-square p_value": "chi_square",
    "Z-test p_value": "z",
    "PSI": "psi",
}


# Data ------------------------------------------------------------------------------
def _labels(prefix: str, k: int) -> np.ndarray[Any, Any]:
    return np.array([f"{prefix}{i:04d}" for i in range(k)], dtype=object)


def _zipf(k: int, a: float) -> np.ndarray[Any, Any]:
    weights = 1.0 / np.arange(1, k + 1) ** a
    return np.asarray(weights / weights.sum())


def _with_missing(values: np.ndarray[Any, Any], rng: np.random.Generator, share: float) -> Any:
    out = values.astype(np.float64 if values.dtype.kind in "biuf" else object)
    out[rng.random(values.size) < share] = np.nan if out.dtype.kind == "f" else None
    return out


def make_frame(rows: int, rng: np.random.Generator, *, shifted: bool) -> pd.DataFrame:
    """One frame of the synthetic data; ``shifted`` draws the current window's version."""
    s = shifted
    n = rows
    mix = 0.5 if s else 0.3
    numeric: dict[str, Any] = {
        "n00": rng.normal(0, 1, n),
        "n01": rng.normal(53 if s else 50, 10, n),  # mean shift of 0.3 sd
        "n02": rng.lognormal(0, 0.75, n),
        "n03": rng.lognormal(3, 1, n) * (1.25 if s else 1.0),  # scale change
        "n04": rng.exponential(2, n),
        "n05": _with_missing(rng.exponential(5, n), rng, 0.05),
        "n06": rng.uniform(0, 100, n),
        "n07": rng.uniform(-0.9, 1.1, n) if s else rng.uniform(-1, 1, n),  # moved range
        "n08": rng.gamma(2, 3, n),
        "n09": np.where(rng.random(n) < mix, rng.normal(5, 1, n), rng.normal(0, 1, n)),
        "n10": rng.poisson(3, n),
        "n11": rng.poisson(30, n),
        "n12": rng.choice(4, n, p=[0.4, 0.3, 0.2, 0.1] if s else [0.1, 0.2, 0.3, 0.4]),
        "n13": (rng.random(n) < 0.3).astype(np.int64),
        "n14": rng.standard_t(3, n),
        "n15": rng.beta(2, 5, n),
        "n16": _with_missing(rng.normal(100, 15, n), rng, 0.2),
        "n17": rng.normal(0.05 if s else 0.0, 1, n),  # under the threshold
        "n18": rng.normal(0, 1.1 if s else 1.0, n),  # under the threshold
        "n19": rng.pareto(3, n) + 1,
    }
    mix_16 = _zipf(16, 1.0)
    categorical: dict[str, Any] = {
        "c0": _labels("o", 3)[rng.choice(3, n, p=[0.45, 0.35, 0.2])],
        "c1": _labels("k", 16)[rng.choice(16, n, p=mix_16)],
        "c2": _labels("k", 16)[rng.choice(16, n, p=mix_16[::-1] if s else mix_16)],
        "c3": _labels("d", 100)[rng.choice(100, n, p=_zipf(100, 0.8))],
        "c5": np.where(rng.random(n) < 0.8, "yes", "no").astype(object),
        "c6": _with_missing(_labels("m", 50)[rng.choice(50, n, p=_zipf(50, 1.2))], rng, 0.03),
        "c7": _labels("h", 1000)[rng.choice(1000, n, p=_zipf(1000, 0.6))],
        "c8": _labels("f", 5)[
            rng.choice(5, n, p=[0.3, 0.25, 0.2, 0.15, 0.1] if s else [0.28, 0.25, 0.2, 0.16, 0.11])
        ],
        "c9": _with_missing(_labels("t", 10)[rng.choice(10, n)], rng, 0.12 if s else 0.01),
    }
    c4 = _labels("d", 100)[rng.choice(100, n, p=_zipf(100, 0.8))]
    if s:
        c4[rng.random(n) < 0.08] = "d_new"  # a category the reference never had
    categorical["c4"] = c4
    frame = pd.DataFrame(numeric)
    for name in CATEGORICAL:
        frame[name] = pd.Series(categorical[name], dtype="str")
    return frame


def build_inputs(reference_rows: int, rows: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    WORK.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    reference = make_frame(reference_rows, rng, shifted=False)
    current = make_frame(rows, rng, shifted=True)
    took = time.perf_counter() - started
    print(f"\nInputs: {reference_rows:,} reference rows, {rows:,} current rows ({took:.0f} s)")
    return reference, current


def write_parquet(frame: pd.DataFrame, name: str) -> Path:
    path = WORK / name
    frame.to_parquet(path, index=False)
    print(f"  {path.relative_to(ROOT)}  {path.stat().st_size / 1e6:,.0f} MB")
    return path


# The peer ---------------------------------------------------------------------------
def peer_python(fresh: bool) -> Path | None:
    return peer_venv(
        PEER_VENV, PEER_PACKAGES, probe="import evidently, pyarrow", name="Evidently", fresh=fresh
    )


def run_peer(python: Path, reference: Path, current: Path, rounds: int) -> dict[str, Any] | None:
    command = [
        str(python),
        str(PEER_SCRIPT),
        "--reference",
        str(reference),
        "--current",
        str(current),
        "--numeric",
        ",".join(NUMERIC),
        "--categorical",
        ",".join(CATEGORICAL),
        "--rounds",
        str(rounds),
    ]
    print(f"\nEvidently: {rounds} run(s) in {PEER_VENV.relative_to(ROOT)}", flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-5:]
        print("NOTE: the Evidently peer failed; it is left out:\n  " + "\n  ".join(tail))
        return None
    result: dict[str, Any] = json.loads(done.stdout)
    print("  " + " ".join(f"{s:.1f}" for s in result["seconds"]) + " s")
    return result


# setpoint ---------------------------------------------------------------------------
def run_setpoint(
    reference: pd.DataFrame, current: pd.DataFrame, rounds: int
) -> tuple[float, list[float], DriftReport]:
    start = time.perf_counter()
    summary = Reference.build(reference, numeric=NUMERIC, categorical=CATEGORICAL)
    build = time.perf_counter() - start
    size = len(json.dumps(summary.to_dict())) / 1e6
    print(f"\nsetpoint: Reference.build {build:.2f} s, {size:.1f} MB of JSON", flush=True)
    detect_drift(summary, current)  # warm-up, untimed
    seconds = []
    report = None
    for _ in range(rounds):
        start = time.perf_counter()
        report = detect_drift(summary, current)
        seconds.append(time.perf_counter() - start)
    print("  detect_drift: " + " ".join(f"{s:.2f}" for s in seconds) + " s")
    if report is None:
        raise RuntimeError("no timed round ran")
    return build, seconds, report


# Reporting ----------------------------------------------------------------------------
def compare(report: DriftReport, peer: dict[str, Any] | None) -> list[str]:
    """Prints the per-feature table; returns the features whose decisions differ."""
    rows, differ = [], []
    for f in report.features:
        ours = [f.name, f.test, f"{f.score:.4g}", "drift" if f.test_drifted else "-"]
        ours.append(",".join(r for r in f.reasons if r != f.test) or "-")
        theirs = ["-", "-", "-", "-"]
        if peer is not None:
            column = peer["columns"][f.name]
            test = EVIDENTLY_TESTS.get(column["method"], column["method"])
            theirs = [test, f"{column['score']:.4g}", "drift" if column["drifted"] else "-", ""]
            if test == f.test:
                agree = column["drifted"] == f.test_drifted
                theirs[3] = "yes" if agree else "NO"
                if not agree:
                    differ.append(f.name)
            else:
                theirs[3] = "other test"
        rows.append([*ours, *theirs])
    headers = ["feature", "test", "score", "decision", "also", "Evidently test", "score"]
    print_table(
        "Per feature: setpoint's test decision (also: missing-rate or new-value alarms), "
        "Evidently's, and whether they agree",
        [*headers, "decision", "agree"],
        rows,
    )
    return differ


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="current rows")
    parser.add_argument("--reference-rows", type=int, default=200_000, help="reference rows")
    parser.add_argument("--rounds", type=int, default=5, help="timed runs of setpoint")
    parser.add_argument("--peer-rounds", type=int, default=1, help="timed runs of Evidently")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data")
    parser.add_argument("--no-peer", action="store_true", help="skip Evidently")
    parser.add_argument("--fresh-peer", action="store_true", help="recreate the peer venv")
    args = parser.parse_args()
    if args.rows < 1000 or args.reference_rows < 1000 or args.rounds < 1:
        parser.error("--rows and --reference-rows must be at least 1000, --rounds at least 1")

    print(f"$ python bench/drift.py {' '.join(sys.argv[1:])}".rstrip())
    print_machine(["setpoint", "pandas", "pyarrow", "numpy", "scipy"])
    reference, current = build_inputs(args.reference_rows, args.rows, args.seed)
    build, seconds, report = run_setpoint(reference, current, args.rounds)

    peer = None
    python = None if args.no_peer else peer_python(fresh=args.fresh_peer)
    if python is not None:
        paths = [
            write_parquet(reference, f"drift-reference-{args.reference_rows}.parquet"),
            write_parquet(current, f"drift-current-{args.rows}.parquet"),
        ]
        peer = run_peer(python, paths[0], paths[1], args.peer_rounds)

    differ = compare(report, peer)
    ours = median(seconds)
    table = [
        [
            "setpoint detect_drift",
            f"{ours:.2f}",
            f"{len(seconds)} runs",
            "1.0",
            f"{report.drift_share:.3f}",
            str(report.drifted),
        ],
        ["setpoint Reference.build (once per model)", f"{build:.2f}", "1 run", "-", "-", "-"],
    ]
    if peer is not None:
        theirs = median(peer["seconds"])
        table.append(
            [
                "Evidently DataDriftPreset",
                f"{theirs:.2f}",
                f"{len(peer['seconds'])} run(s)",
                f"{theirs / ours:.1f}",
                f"{peer['share']:.3f}",
                str(peer["dataset_drift"]),
            ]
        )
    title = (
        f"Drift report, {args.rows:,} current rows x {len(NUMERIC) + len(CATEGORICAL)} "
        f"features vs {args.reference_rows:,} reference rows: median seconds"
    )
    print_table(title, ["tool", "seconds", "n", "ratio", "drift share", "dataset drift"], table)
    if peer is not None:
        same = [
            f.name
            for f in report.features
            if EVIDENTLY_TESTS.get(peer["columns"][f.name]["method"]) == f.test
        ]
        print(
            f"\nSame test on {len(same)} of {len(report.features)} features; "
            f"decisions agree on {len(same) - len(differ)}; "
            f"disagree on {len(differ)}: {', '.join(differ) or 'none'}"
        )
        print("peer: " + ", ".join(f"{k} {v}" for k, v in peer["versions"].items()))
    print(
        f"setpoint: BH-rejected at fdr {report.fdr}: {len(report.bh_rejected)} features; "
        f"K-S and Wasserstein on {report.sample_size:,} sampled current rows (seed {report.seed})"
    )


if __name__ == "__main__":
    main()
