"""setpoint's training time over plain LightGBM's, on the same rows with the same parameters.

Data: the quickstart's flight events of January-July 2013 (``flight_events``), the
quickstart spec and recipe: train and validation rows are January-June (the
validation slice is the latest 15% of them), July is the test slice.

* plain: ``lightgbm.train`` on the train rows with early stopping on the
  validation rows, both picked with ``setpoint.train.split.time_split``; the
  parameters are ``TrainResult.params`` (same rounds, early stopping and threads);
  the categorical columns as pandas ``category``. Timed: building the frames
  (category conversion included), the Datasets and ``lightgbm.train``.
* ``train_model``: the whole call on the in-memory frame: split, preprocessing,
  the same LightGBM fit, calibration, threshold, test and per-segment metrics.
* ``Project.train``: the same rows loaded from a store (ingested as one batch
  beforehand), ``train_model``, registration with lineage and the promotion
  gate against a champion (each round works on a fresh copy of that store).

Sides alternate within each round (the order reverses every other round) after
one untimed warm-up round; the figures are medians.

    python bench/train_overhead.py                  # 5 rounds
    python bench/train_overhead.py --rows 40000 --rounds 2
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import time
from collections.abc import Callable

import lightgbm as lgb
import numpy as np
import pandas as pd
from _common import WORK, instrumented, median, print_machine, print_table

import setpoint.kinds.tabular
import setpoint.project
import setpoint.registry.gate
from setpoint.config.spec import ProjectSpec
from setpoint.data.schema import infer_schema
from setpoint.project import Project
from setpoint.quickstart.build import TRAIN_MONTHS, quickstart_spec
from setpoint.quickstart.flights import flight_events
from setpoint.store.workspace import Store
from setpoint.train.split import Split, time_split
from setpoint.train.trainer import TrainResult, train_model

TEMPLATE = WORK / "train-template"
SCRATCH = WORK / "train-scratch"


def load_frame(rows: int | None, seed: int) -> pd.DataFrame:
    events = flight_events(cache=WORK / "cache")
    months = events["scheduled_at"].dt.tz_convert("America/New_York").dt.month
    frame: pd.DataFrame = events[months.isin(list(TRAIN_MONTHS))]
    if rows is not None and rows < len(frame):
        frame = frame.sample(n=rows, random_state=seed).sort_index()  # keeps the time order
    return frame.reset_index(drop=True)


def with_threads(spec: ProjectSpec, threads: int | None) -> ProjectSpec:
    if threads is None:
        return spec
    recipe = spec.model.model_copy(update={"params": {**spec.model.params, "num_threads": threads}})
    return spec.model_copy(update={"model": recipe})


def make_template(spec: ProjectSpec, frame: pd.DataFrame) -> None:
    """A store holding ``frame`` and a first model, the champion.

    One batch, so that the schema is inferred from all of it and no row is
    quarantined: ``Project.train`` then trains on the very rows the other sides do.
    """
    shutil.rmtree(TEMPLATE, ignore_errors=True)
    TEMPLATE.mkdir(parents=True)
    project = Project(spec, Store.open(TEMPLATE), root=TEMPLATE)
    stored = project.ingest(frame).dataset
    if stored.n_rows != len(frame):
        raise RuntimeError(f"{stored.n_quarantined} rows were quarantined")
    outcome = project.train()
    if project.aliases().get("champion") != outcome.version.version:
        raise RuntimeError(f"the first model did not become champion: {outcome.decision}")
    project.store.db.dispose()


# Project.train's stages: the functions it calls, timed where each module looks them
# up (setpoint.project, the tabular kind's build, the gate's judge); "other" is the
# rest (lineage, loading both models, scoring the holdout, recording the decision).
PROJECT_STAGES = {
    "load": ["load_dataset", "latest_schema", "get_schema"],
    "register": ["register_model"],
}
KIND_STAGES = {"train_model": ["train_model"]}
GATE_STAGES = {"gate bootstrap": ["evaluate_gate"]}
PLAIN, TRAIN_MODEL, PROJECT_TRAIN = "plain lightgbm.train", "setpoint train_model", "Project.train"


class Sides:
    """The three timed calls, what each needs prepared once, and what they measured."""

    def __init__(self, spec: ProjectSpec, frame: pd.DataFrame) -> None:
        self.spec = spec
        self.frame = frame
        schema = infer_schema(frame, spec=spec)  # the columns Project.train would use
        self.numeric = schema.numeric_columns
        self.categorical = schema.categorical_columns
        self.split: Split = time_split(
            frame,
            timestamp=spec.timestamp,
            split=spec.model.split,
            target=spec.target,
            task=spec.task,
        )
        params = dict(self.train_model().params)  # the parameters for the plain side
        self.rounds = int(params.pop("num_boost_round"))
        self.stopping = int(params.pop("early_stopping_rounds"))
        self.params = params
        self.iterations: dict[str, set[int]] = {
            PLAIN: set(),
            TRAIN_MODEL: set(),
            PROJECT_TRAIN: set(),
        }
        self.stages: dict[str, list[dict[str, float]]] = {TRAIN_MODEL: [], PROJECT_TRAIN: []}
        self.model_digests: set[str] = set()

    def train_model(self) -> TrainResult:
        return train_model(
            self.frame,
            task=self.spec.task,
            target=self.spec.target,
            features_numeric=self.numeric,
            features_categorical=self.categorical,
            timestamp=self.spec.timestamp,
            recipe=self.spec.model,
            segments=self.spec.segments,
            primary_metric=self.spec.metric,
        )

    def plain(self) -> float:
        start = time.perf_counter()
        x = self.frame[[*self.numeric, *self.categorical]]
        x = x.astype(dict.fromkeys(self.categorical, "category"))
        y = self.frame[self.spec.target].to_numpy(dtype=np.float64)
        train, valid = self.split.train, self.split.valid
        train_set = lgb.Dataset(x.iloc[train], label=y[train], categorical_feature=self.categorical)
        valid_set = lgb.Dataset(x.iloc[valid], label=y[valid], reference=train_set)
        booster = lgb.train(
            self.params,
            train_set,
            num_boost_round=self.rounds,
            valid_sets=[valid_set],
            valid_names=["valid"],
            callbacks=[lgb.early_stopping(self.stopping, first_metric_only=True, verbose=False)],
        )
        seconds = time.perf_counter() - start
        self.iterations[PLAIN].add(int(booster.best_iteration))
        return seconds

    def setpoint_train_model(self) -> float:
        start = time.perf_counter()
        result = self.train_model()
        seconds = time.perf_counter() - start
        self.iterations[TRAIN_MODEL].add(int(result.best_iteration or 0))
        self.stages[TRAIN_MODEL].append({k: v for k, v in result.timings.items() if k != "total"})
        digest = hashlib.sha256()
        for name, content in sorted(result.model.to_files().items()):
            digest.update(name.encode() + b"\0" + content)
        self.model_digests.add(digest.hexdigest())
        return seconds

    def project_train(self) -> float:
        shutil.rmtree(SCRATCH, ignore_errors=True)
        shutil.copytree(TEMPLATE, SCRATCH)
        project = Project(self.spec, Store.open(SCRATCH), root=SCRATCH)
        stages: dict[str, float] = {}
        with (
            instrumented(setpoint.project, PROJECT_STAGES, stages),
            instrumented(setpoint.kinds.tabular, KIND_STAGES, stages),
            instrumented(setpoint.registry.gate, GATE_STAGES, stages),
        ):
            start = time.perf_counter()
            outcome = project.train()
            seconds = time.perf_counter() - start
        project.store.db.dispose()
        stages["other"] = seconds - sum(stages.values())
        self.stages[PROJECT_TRAIN].append(stages)
        self.iterations[PROJECT_TRAIN].add(int(outcome.result.best_iteration or 0))
        return seconds


def report(sides: Sides, seconds: dict[str, list[float]], title: str) -> None:
    plain = median(seconds[PLAIN])
    table: list[list[str]] = []
    for name, values in seconds.items():
        best = ", ".join(map(str, sorted(sides.iterations[name])))
        spread = [f"{median(values):.2f}", f"{min(values):.2f}", f"{max(values):.2f}"]
        table.append([name, *spread, best, f"{median(values) / plain:.2f}"])
    print_table(title, ["side", "median s", "min", "max", "best iteration", "ratio"], table)
    for name, runs in sides.stages.items():
        parts = ", ".join(f"{k} {median([r[k] for r in runs]):.3f}" for k in runs[0])
        print(f"{name} stages, median s: {parts}")
    same = "yes" if len(sides.model_digests) == 1 else f"NO ({len(sides.model_digests)} digests)"
    print(f"train_model's model files byte-identical across rounds: {same}")
    print(f"load avg at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=None, help="subsample to this many rows")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --rows subsample")
    parser.add_argument(
        "--threads", type=int, default=None, help="num_threads for both sides (default: LightGBM's)"
    )
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    print(f"$ python bench/train_overhead.py {' '.join(sys.argv[1:])}".rstrip())
    print_machine(["setpoint", "lightgbm", "pandas", "numpy"])
    spec = with_threads(quickstart_spec(), args.threads)
    frame = load_frame(args.rows, args.seed)
    sides = Sides(spec, frame)
    rows = {name: len(getattr(sides.split, name)) for name in ("train", "valid", "test")}
    print(f"\nrows: {len(frame):,} ({', '.join(f'{k} {v:,}' for k, v in rows.items())})")
    print(f"features: numeric {sides.numeric}; categorical {sides.categorical}")
    print(f"params: {sides.params}, num_boost_round {sides.rounds}, stopping {sides.stopping}")
    make_template(spec, frame)

    timed: dict[str, Callable[[], float]] = {
        PLAIN: sides.plain,
        TRAIN_MODEL: sides.setpoint_train_model,
        PROJECT_TRAIN: sides.project_train,
    }
    seconds: dict[str, list[float]] = {name: [] for name in timed}
    for number in range(args.rounds + 1):
        label = "warm-up (not counted)" if number == 0 else f"round {number}/{args.rounds}"
        order = list(timed) if number % 2 == 0 else list(reversed(timed))
        took = {name: timed[name]() for name in order}
        print(f"{label}: " + ", ".join(f"{n} {s:.2f} s" for n, s in took.items()), flush=True)
        if number == 0:  # the warm-up's measurements are dropped
            for runs in sides.stages.values():
                runs.clear()
            continue
        for name, value in took.items():
            seconds[name].append(value)
    shutil.rmtree(SCRATCH, ignore_errors=True)
    threads = args.threads or "LightGBM's default"
    report(sides, seconds, f"Training, {args.rounds} rounds (num_threads: {threads})")


if __name__ == "__main__":
    main()
