"""The pandera side of bench/ingest.py; runs in its own venv (bench/.venvs/pandera).

Reads the checks setpoint's schema implies (a JSON file written by bench/ingest.py)
and the same Parquet files, builds the equivalent pandera schema and times
``schema.validate(frame, lazy=True)`` plus dropping the failing rows, so that both
sides end with the clean rows and a list of what failed. Reading the file is not
timed, as on the setpoint side. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from importlib import metadata
from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors


def build_schema(checks: list[dict[str, Any]]) -> pa.DataFrameSchema:
    columns: dict[str, pa.Column] = {}
    for col in checks:
        rules: list[pa.Check] = []
        if col["min"] is not None or col["max"] is not None:
            low = -math.inf if col["min"] is None else col["min"]
            high = math.inf if col["max"] is None else col["max"]
            rules.append(pa.Check.in_range(low, high))  # inclusive, as setpoint's
        if col["categories"] is not None:
            rules.append(pa.Check.isin(col["categories"]))
        columns[col["name"]] = pa.Column(
            pd.api.types.pandas_dtype(col["dtype"]),
            rules,
            nullable=col["nullable"],
            unique=col["unique"],
            report_duplicates="exclude_first",  # the first row of an id is kept, as setpoint's
        )
    # coerce: cast each column to its dtype, reporting values that do not cast,
    # as setpoint converts each column to its schema dtype.
    return pa.DataFrameSchema(columns, coerce=True)


def validate(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> tuple[float, int, int]:
    """Seconds, failing rows and clean rows of one validation."""
    start = time.perf_counter()
    try:
        schema.validate(frame, lazy=True)
        failing = pd.Index([])
    except SchemaErrors as exc:
        failing = pd.Index(exc.failure_cases["index"].dropna().unique())
    clean = frame.drop(index=failing)
    return time.perf_counter() - start, len(failing), len(clean)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checks", required=True, help="JSON file written by bench/ingest.py")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("files", nargs="+", help="Parquet files, validated in turn each round")
    args = parser.parse_args()
    with open(args.checks, encoding="utf-8") as handle:
        schema = build_schema(json.load(handle))
    frames = {path: pd.read_parquet(path) for path in args.files}
    validate(schema, next(iter(frames.values())))  # warm-up, untimed, as on setpoint's side
    runs: dict[str, list[dict[str, float]]] = {path: [] for path in args.files}
    for _ in range(args.rounds):
        for path, frame in frames.items():
            seconds, failing, clean = validate(schema, frame)
            runs[path].append({"seconds": seconds, "failing_rows": failing, "clean_rows": clean})
    versions = {name: metadata.version(name) for name in ("pandera", "pandas", "pyarrow", "numpy")}
    print(json.dumps({"versions": versions, "runs": runs}))


if __name__ == "__main__":
    main()
