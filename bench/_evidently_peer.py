"""The Evidently side of bench/drift.py; runs in its own venv (bench/.venvs/evidently).

Reads the reference and current Parquet files bench/drift.py wrote, declares
the numeric and categorical columns (``DataDefinition``) and times
``Dataset.from_pandas`` for both frames plus ``Report([DataDriftPreset()]).run``,
Evidently 0.7's default drift report. Reading the files is not timed, as on
setpoint's side. Prints one JSON object: the seconds of each round, every
column's method, threshold, score and decision, and the dataset-level result.
"""

from __future__ import annotations

import argparse
import json
import time
from importlib import metadata
from typing import Any

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset


def run(
    reference: pd.DataFrame, current: pd.DataFrame, numeric: list[str], categorical: list[str]
) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    report = Report([DataDriftPreset()], include_tests=True)
    snapshot = report.run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    seconds = time.perf_counter() - start
    return seconds, snapshot.dict()


def summarize(snapshot: dict[str, Any]) -> dict[str, Any]:
    """Per column: method, threshold, score, drifted; and the share of drifted columns."""
    columns: dict[str, dict[str, Any]] = {}
    share = None
    for metric in snapshot["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            columns[config["column"]] = {
                "method": config["method"],
                "threshold": config["threshold"],
                "score": metric["value"],
            }
        elif config["type"].endswith("DriftedColumnsCount"):
            share = metric["value"]["share"]
    dataset_drift = None
    for test in snapshot["tests"]:
        name = test["name"]
        if name.startswith("Value Drift for column "):
            column = name.removeprefix("Value Drift for column ")
            columns[column]["drifted"] = test["status"] == "FAIL"
        elif name.startswith("Share of Drifted Columns"):
            dataset_drift = test["status"] == "FAIL"
    return {"columns": columns, "share": share, "dataset_drift": dataset_drift}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reference", required=True)
    parser.add_argument("--current", required=True)
    parser.add_argument("--numeric", required=True, help="comma-separated column names")
    parser.add_argument("--categorical", required=True, help="comma-separated column names")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    reference = pd.read_parquet(args.reference)
    current = pd.read_parquet(args.current)
    numeric, categorical = args.numeric.split(","), args.categorical.split(",")
    seconds, result = [], {}
    for _ in range(args.rounds):
        took, snapshot = run(reference, current, numeric, categorical)
        seconds.append(took)
        result = summarize(snapshot)
    packages = ("evidently", "pandas", "pyarrow", "numpy", "scipy")
    versions = {name: metadata.version(name) for name in packages}
    print(json.dumps({"versions": versions, "seconds": seconds, **result}))


if __name__ == "__main__":
    main()
