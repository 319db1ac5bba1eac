"""The Python API: one project, its spec and its store. The CLI only wraps this.

Typical use::

    project = Project.open(".")            # reads ./setpoint.yaml, opens ./.setpoint/
    project.ingest("data/january.csv")     # validate and store a batch
    outcome = project.train()              # train, register, put through the gate
    outcome.decision.passed
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from setpoint.data.asof import asof_join
from setpoint.data.sources import read_source
from setpoint.errors import ConfigError, NotFoundError, SchemaError, SetpointError
from setpoint.registry import aliases as alias_ops
from setpoint.registry.datasets import IngestResult, ingest, latest_schema, load_dataset
from setpoint.registry.events import Event, list_events
from setpoint.registry.gate import GateDecision, evaluate_gate, record_gate_decision
from setpoint.registry.lineage import code_version, package_versions
from setpoint.registry.models import (
    ModelVersion,
    get_version,
    list_versions,
    load_artifacts,
    register_model,
)
from setpoint.spec.loader import SPEC_FILE, load_spec
from setpoint.spec.model import ProjectSpec, SourceSpec, Task
from setpoint.store.workspace import Store
from setpoint.train.model import TabularModel
from setpoint.train.split import time_split
from setpoint.train.trainer import TrainResult, train_model

__all__ = ["Project", "TrainOutcome"]

TABULAR_KIND = "tabular/v1"
_ROLLBACK = "rollback:"
Progress = Callable[[str, float], None]


@dataclass(frozen=True, slots=True)
class TrainOutcome:
    """A trained and registered version, and what the gate decided about it."""

    version: ModelVersion
    result: TrainResult
    decision: GateDecision


class Project:
    """A project: its validated spec plus the store that holds its state."""

    def __init__(self, spec: ProjectSpec, store: Store, *, root: Path) -> None:
        self.spec = spec
        self.store = store
        self.root = root

    @classmethod
    def open(cls, root: Path | str = ".", *, spec_path: Path | str | None = None) -> Project:
        root = Path(root)
        spec = load_spec(Path(spec_path) if spec_path else root / SPEC_FILE)
        return cls(spec, Store.open(root), root=root)

    @property
    def name(self) -> str:
        return self.spec.project

    # Data ---------------------------------------------------------------------------
    def ingest(
        self, source: Any = None, *, name: str = "events", new_schema: bool = False
    ) -> IngestResult:
        """Validate and store one batch; ``source`` defaults to ``sources.<name>`` of the spec.

        Batches of ``events`` first get the spec's ``joins``: each feature table
        is joined point-in-time, so a row only ever sees feature values that
        existed at its own time.
        """
        if source is None:
            if name not in self.spec.sources:
                raise ConfigError(
                    f"No source given and the spec has no 'sources.{name}' entry.", dataset=name
                )
            source = self.spec.sources[name]
        if isinstance(source, SourceSpec | str | Path):
            label = source.path or "sql query" if isinstance(source, SourceSpec) else str(source)
            source = read_source(source, name=label, root=self.root)
        else:
            label = None
        if name == "events" and self.spec.joins:
            source = self._join_features(source)
        return ingest(self.store, self.spec, source, name=name, new_schema=new_schema, label=label)

    def _join_features(self, events: Any) -> pd.DataFrame:
        frame = read_source(events)
        for i, join in enumerate(self.spec.joins):
            features = read_source(self.spec.sources[join.source], name=join.source, root=self.root)
            keep = join.columns or [c for c in features.columns if c not in join.by]
            missing = [c for c in [*join.by, join.feature_time, *keep] if c not in features]
            if missing:
                raise SchemaError(
                    f"joins[{i}]: the feature table {join.source!r} has no column(s) {missing}.",
                    column=missing[0],
                )
            event_time = join.event_time or str(self.spec.timestamp)
            if event_time not in frame:
                raise SchemaError(
                    f"joins[{i}]: the events have no time column {event_time!r}.",
                    column=event_time,
                )
            selected = features[list(dict.fromkeys([*join.by, join.feature_time, *keep]))]
            frame = asof_join(
                frame.assign(**{event_time: _as_datetime(frame[event_time], event_time)}),
                selected.assign(
                    **{join.feature_time: _as_datetime(selected[join.feature_time], join.source)}
                ),
                by=join.by,
                event_time=event_time,
                feature_time=join.feature_time,
                tolerance=None
                if join.tolerance_delta is None
                else pd.Timedelta(join.tolerance_delta),
            )
            if join.feature_time not in keep:
                frame = frame.drop(columns=[join.feature_time], errors="ignore")
        return frame

    # Training and the gate ------------------------------------------------------------
    def train(
        self,
        *,
        dataset: str = "events",
        version: int | None = None,
        promote: bool = True,
        progress: Progress | None = None,
    ) -> TrainOutcome:
        """Train on a dataset version, register the model, and put it through the gate."""
        frame, batches = load_dataset(self.store, project=self.name, name=dataset, version=version)
        schema = latest_schema(self.store, project=self.name)
        if schema is None:
            raise NotFoundError(kind="schema", name=self.name, hint="Ingest a dataset first.")
        features = set(schema.feature_columns)
        numeric = [c for c in schema.numeric_columns if c in features]
        categorical = [c for c in schema.categorical_columns if c in features]
        common: dict[str, Any] = {
            "task": self.spec.task,
            "target": self.spec.target,
            "features_numeric": numeric,
            "features_categorical": categorical,
            "timestamp": self.spec.timestamp,
            "primary_metric": self.spec.metric,
        }
        recipe = self.spec.model
        tuned: dict[str, Any] | None = None
        if recipe.tuning.trials > 0 or recipe.tuning.timeout_s is not None:
            from setpoint.train.tune import tune

            tuned = tune(
                frame,
                **common,
                recipe=recipe,
                trials=recipe.tuning.trials or None,
                timeout_s=recipe.tuning.timeout_s,
                progress=progress,
            )
            recipe = recipe.model_copy(update={"params": tuned})
        result = train_model(
            frame, **common, recipe=recipe, segments=self.spec.segments, progress=progress
        )
        dataset_version = batches[-1].version
        lineage = {
            "dataset": {
                "name": dataset,
                "version": dataset_version,
                "batches": [b.content_hash for b in batches],
                "rows": len(frame),
            },
            "schema_version": schema.version,
            "recipe": recipe.model_dump(mode="json"),
            "tuned": tuned is not None,
            "split": result.split,
            "code": code_version(self.root),
            "packages": package_versions(),
            "timings": result.timings,
        }
        registered = register_model(
            self.store,
            project=self.name,
            kind=TABULAR_KIND,
            files=result.model.to_files(),
            lineage=lineage,
            metrics={"slices": result.metrics, "segments": result.segment_metrics},
            params=result.params,
        )
        decision = self._judge(registered, frame=frame, promote=promote)
        return TrainOutcome(version=registered, result=result, decision=decision)

    def promote(self, version: int, *, reason: str = "", force: bool = False) -> GateDecision:
        """Put ``version`` through the gate; it becomes champion if it passes (or if forced)."""
        candidate = get_version(self.store, project=self.name, version=version)
        name = candidate.lineage["dataset"]["name"]
        frame, _ = load_dataset(
            self.store,
            project=self.name,
            name=name,
            version=candidate.lineage["dataset"]["version"],
        )
        return self._judge(candidate, frame=frame, promote=True, force=force, reason=reason)

    def rollback(self, *, reason: str) -> int:
        """Give ``champion`` back to the version that held it before the current one.

        Repeated rollbacks walk further back (3 -> 2 -> 1), never flip-flop.
        """
        history = alias_ops.alias_history_of(self.store.db, project=self.name, alias="champion")
        held: list[int] = []
        for change in history:
            if change.reason.startswith(_ROLLBACK) and held:
                held.pop()
            elif change.version is not None:
                held.append(change.version)
        if len(held) < 2:
            raise SetpointError("Nothing to roll back to: no earlier champion.", project=self.name)
        previous = held[-2]
        with self.store.db.write() as conn:
            alias_ops.set_alias(
                conn,
                project=self.name,
                alias="champion",
                version=previous,
                reason=f"{_ROLLBACK} {reason}",
                actor="user",
            )
        return previous

    # Reading ----------------------------------------------------------------------
    def versions(self) -> list[ModelVersion]:
        return list_versions(self.store, project=self.name)

    def aliases(self) -> dict[str, int]:
        return alias_ops.list_aliases(self.store.db, project=self.name)

    def events(self, *, kind: str | None = None, limit: int = 100) -> list[Event]:
        return list_events(self.store.db, project=self.name, kind=kind, limit=limit)

    def load_model(self, ref: int | str = "champion") -> TabularModel:
        """A registered model, its artifacts checked against their sha256 first."""
        if isinstance(ref, str):
            number = alias_ops.get_alias(self.store.db, project=self.name, alias=ref)
            if number is None:
                raise NotFoundError(kind="alias", name=ref, hint="Train and promote a model first.")
            ref = number
        version = get_version(self.store, project=self.name, version=ref)
        if version.kind != TABULAR_KIND:
            raise ConfigError(
                f"Model {self.name}@{ref} is a {version.kind!r} model, not a tabular one.",
                kind=version.kind,
            )
        return TabularModel.from_files(load_artifacts(self.store, version))

    # Internals ------------------------------------------------------------------------
    def _judge(
        self,
        candidate: ModelVersion,
        *,
        frame: pd.DataFrame,
        promote: bool,
        force: bool = False,
        reason: str = "",
    ) -> GateDecision:
        holdout = self._holdout(frame)
        challenger = self.load_model(candidate.version)
        y = challenger.encode_labels(holdout[self.spec.target])
        champion_number = alias_ops.get_alias(self.store.db, project=self.name, alias="champion")
        champion_scores = None
        if champion_number is not None and champion_number != candidate.version:
            champion_scores = self._scores(self.load_model(champion_number), holdout)
        elif champion_number == candidate.version:
            champion_number = None
        decision = evaluate_gate(
            y,
            champion_scores,
            self._scores(challenger, holdout),
            metric=self.spec.metric,
            policy=self.spec.gate,
            challenger=candidate.version,
            champion=champion_number,
            segments=holdout[self.spec.segments] if self.spec.segments else None,
            stratify=self.spec.task is not Task.REGRESSION,
        )
        with self.store.db.write() as conn:
            record_gate_decision(conn, project=self.name, decision=decision)
            if promote and (decision.passed or force):
                why = reason or "; ".join(decision.reasons)
                if force and not decision.passed:
                    why = f"forced past a failed gate: {why}"
                alias_ops.set_alias(
                    conn,
                    project=self.name,
                    alias="champion",
                    version=candidate.version,
                    reason=why,
                    actor="user" if force else "gate",
                )
            elif promote:
                alias_ops.set_alias(
                    conn,
                    project=self.name,
                    alias="challenger",
                    version=candidate.version,
                    reason="gate not passed: " + "; ".join(decision.reasons),
                    actor="gate",
                )
        return decision

    def _holdout(self, frame: pd.DataFrame) -> pd.DataFrame:
        # The same call as the trainer's, so the gate judges the very test rows.
        split = time_split(
            frame,
            timestamp=self.spec.timestamp,
            split=self.spec.model.split,
            target=self.spec.target,
            task=self.spec.task,
        )
        return frame.iloc[split.test].reset_index(drop=True)

    def _scores(self, model: TabularModel, holdout: pd.DataFrame) -> np.ndarray:
        return np.asarray(model.predict_scores(holdout))


def _as_datetime(values: pd.Series, where: str) -> pd.Series:
    """Times as UTC datetimes; text must be ISO 8601."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return values
    try:
        return pd.to_datetime(values, utc=True, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise SchemaError(
            f"{where}: column {values.name!r} is not ISO 8601 times: {exc}", column=str(values.name)
        ) from None
