"""Where one served request's CPU goes, stage by stage, and what a thread's sleep costs here.

Part 1 times, in one process and without HTTP, each stage ``setpoint serve``
runs for a one-record request on the serving benchmark's model (200 trees, 30
numeric features; bench/_serve_model.py): validation against the schema, the
model matrix, LightGBM (``Booster.predict`` against the prepared single-row
entry point the server uses), the answer, and the prediction log's encoding.

Part 2 measures this machine, not setpoint: the CPU time of the same pure
Python work (about 100 µs) when it runs back to back, and when the thread
sleeps between runs as a server's thread does when it waits for its log's
fsync or its next request. On a virtual machine the work after a sleep can take
noticeably longer (cold caches after the virtual CPU idled), which is why the
serving benchmark's CPU per request rises when the server waits.

    python bench/request_path.py
"""

from __future__ import annotations

import argparse
import resource
import time
import timeit
from collections.abc import Callable
from typing import Any

from _common import WORK, print_machine, print_table
from _serve_model import build

from setpoint.project import Project
from setpoint.serve.scorer import _predictions, load_scorer
from setpoint.traffic.segments import encode


def best_us(fn: Callable[[], Any], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def stages(number: int) -> list[list[str]]:
    model_dir = WORK / "request_path" / "project"
    bench = build(model_dir, rows=50_000, seed=0)
    project = Project.open(model_dir)
    scorer = load_scorer(project, bench.version, on_invalid="reject", max_batch=1000)
    records = [dict(bench.record)]
    model = scorer.model
    batch = scorer.validator.validate(records)
    matrix = model.preprocessor.transform_checked(batch.columns)
    booster = model.head._booster  # the general path, for comparison only
    scores = model.predict_matrix(matrix, num_threads=1)
    scored = scorer.score(records)
    row = {
        "request_id": "0" * 32,
        "index": 0,
        "entity_id": None,
        "model_version": "1",
        "role": "champion",
        "inputs": records[0],
        "output": scored.outputs[0],
        "latency_ms": 0.3,
    }
    timed = [
        ("validate one record", lambda: scorer.validator.validate(records)),
        (
            "model matrix from validated columns",
            lambda: model.preprocessor.transform_checked(batch.columns),
        ),
        ("LightGBM Booster.predict (general path)", lambda: booster.predict(matrix, num_threads=1)),
        ("LightGBM prepared single-row path", lambda: model.head.predict(matrix, num_threads=1)),
        ("answer from the score", lambda: _predictions(model, scores)),
        ("prediction log: encode the record", lambda: encode(row)),
        ("Scorer.score, all of the above but the log", lambda: scorer.score(records)),
    ]
    return [[name, f"{best_us(fn, number):.1f}"] for name, fn in timed]


def work(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def after_sleep(sleep_s: float, loops: int, size: int) -> float:
    before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(loops):
        work(size)
        if sleep_s:
            time.sleep(sleep_s)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return (after.ru_utime - before.ru_utime) / loops * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=20_000, help="calls per timing")
    args = parser.parse_args()
    print_machine(["lightgbm", "numpy", "orjson"])
    print_table(
        "Part 1: one-record request, CPU per stage (best of 5, µs)",
        ["stage", "µs"],
        stages(args.number),
    )
    size = 2_000
    rows = []
    base = after_sleep(0.0, 3_000, size)
    rows.append(["none", f"{base:.1f}", "1.00"])
    for sleep_s, loops in ((0.0003, 2_000), (0.002, 500)):
        cost = after_sleep(sleep_s, loops, size)
        rows.append([f"{sleep_s * 1000:g} ms", f"{cost:.1f}", f"{cost / base:.2f}"])
    print_table(
        "Part 2: the same Python work, user CPU per run (µs) by the sleep before it",
        ["sleep between runs", "µs of CPU", "ratio"],
        rows,
    )


if __name__ == "__main__":
    main()
