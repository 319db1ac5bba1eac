"""The Python API: one project, its spec and its store. The CLI only wraps this.

Typical use::

    project = Project.open(".")            # reads ./setpoint.yaml, opens ./.setpoint/
    project.ingest("data/january.csv")     # validate and store a batch
    outcome = project.train()              # train, register, put through the gate
    outcome.decision.passed
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.engine import Connection

from setpoint.config.loader import SPEC_FILE, load_spec
from setpoint.config.spec import ProjectSpec, SourceSpec
from setpoint.data.features import feature_columns, join_feature_tables
from setpoint.data.schema import check_spec_columns
from setpoint.data.sources import read_source
from setpoint.errors import (
    ConfigError,
    InvalidParameterError,
    NotFoundError,
    SetpointError,
    StoreError,
)
from setpoint.kinds.protocol import REFERENCE_FILE, Evaluation, MonitoringReference
from setpoint.kinds.tabular import TABULAR
from setpoint.registry import aliases as alias_ops
from setpoint.registry import gate
from setpoint.registry.datasets import IngestResult, get_schema, ingest, load_dataset
from setpoint.registry.events import Event, list_events
from setpoint.registry.gate import GateDecision, record_gate_decision
from setpoint.registry.lineage import code_version, package_versions
from setpoint.registry.models import (
    ModelVersion,
    get_version,
    list_versions,
    load_artifacts,
    register_model,
)
from setpoint.settings import get_settings
from setpoint.store.workspace import Store
from setpoint.train.split import time_split
from setpoint.train.tabular_model import TabularModel
from setpoint.train.trainer import TrainResult
from setpoint.train.training_set import TrainingSet

__all__ = ["Project", "Retrained", "TrainOutcome"]

Progress = Callable[[str, float], None]


@dataclass(frozen=True, slots=True)
class TrainOutcome:
    """A trained and registered version, and what the gate decided about it."""

    version: ModelVersion
    result: TrainResult
    decision: GateDecision


@dataclass(frozen=True, slots=True)
class Retrained:
    """A model trained on an as-of training set, registered, and the gate's verdict on it."""

    version: ModelVersion
    result: TrainResult
    decision: GateDecision
    seconds: float  # spent training


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
        try:
            store = Store.open(root)
        except OSError as exc:
            # The embedded store's folder cannot be made (SETPOINT_HOME is a
            # file, read-only, on a missing drive...).
            raise StoreError(
                f"Cannot create the store folder {exc.filename}: {exc.strerror}. It comes from "
                "SETPOINT_HOME (default: .setpoint in the project folder).",
                path=str(exc.filename),
            ) from None
        return cls(spec, store, root=root)

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
            # The entity is read as text: ids must keep their leading zeros and digits.
            ids = [self.spec.entity] if self.spec.entity else []
            source = read_source(source, name=label, root=self.root, text_columns=ids)
        else:
            label = None
        if name == "events" and self.spec.joins:
            source = join_feature_tables(source, self.spec, root=self.root)
        return ingest(self.store, self.spec, source, name=name, new_schema=new_schema, label=label)

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
        # The schema the data was validated with: a newer one may type columns otherwise.
        schema = get_schema(self.store, project=self.name, version=batches[-1].schema_version)
        numeric, categorical, unused = feature_columns(self.spec, schema)
        recipe = TABULAR.recipe(self.spec, num_threads=get_settings().num_threads)
        tuned: dict[str, Any] | None = None
        if recipe.tuning.trials > 0 or recipe.tuning.timeout_s is not None:
            from setpoint.train.tune import tune

            tuned = tune(
                frame,
                task=self.spec.task,
                target=self.spec.target,
                features_numeric=numeric,
                features_categorical=categorical,
                timestamp=self.spec.timestamp,
                primary_metric=self.spec.metric,
                recipe=recipe,
                trials=recipe.tuning.trials or None,
                timeout_s=recipe.tuning.timeout_s,
                progress=progress,
            )
            recipe = recipe.model_copy(update={"params": tuned})
        result = TABULAR.build(
            frame,
            spec=self.spec,
            recipe=recipe,
            numeric=numeric,
            categorical=categorical,
            progress=progress,
        )
        lineage = {
            "dataset": {
                "name": dataset,
                "version": batches[-1].version,
                "batches": [b.content_hash for b in batches],
                "rows": len(frame),
            },
            "schema_version": schema.version,
            "features": {"numeric": numeric, "categorical": categorical, "unused": unused},
            "recipe": recipe.model_dump(mode="json"),
            "tuned": tuned is not None,
        }
        files = TABULAR.files(result, TABULAR.reference(result, frame))
        # Judged before it is registered, on the very bytes that will be stored:
        # a gate that cannot judge it must leave no version without a decision.
        decision = self._decide(TABULAR.load(files), number=0, frame=frame)
        registered = self._register(files, result, lineage)
        decision = replace(decision, challenger=registered.version)
        self._record(decision, promote=promote)
        return TrainOutcome(version=registered, result=result, decision=decision)

    def retrain(
        self,
        data: TrainingSet,
        *,
        job: int,
        origin: dict[str, Any],
        numeric: list[str],
        categorical: list[str],
        schema_version: int | None,
    ) -> Retrained:
        """Train on an as-of training set (the autopilot's), register it, and judge it.

        The gate compares it with the champion on ``data``'s holdout; the decision
        is returned, not recorded, so that the caller stores it in the same
        transaction as its own state. A model this ``job`` registered before
        (a retried job) is found again by the job id in its lineage, never
        registered twice. ``origin`` goes into the lineage as ``autopilot``.
        """
        recipe = TABULAR.recipe(
            self.spec,
            num_threads=get_settings().num_threads,
            split=data.split(valid_fraction=self.spec.model.split.valid_fraction),
        )
        clock = time.perf_counter()
        result = TABULAR.build(
            data.frame,
            spec=self.spec,
            recipe=recipe,
            numeric=numeric,
            categorical=categorical,
            weights=data.weights,
        )
        seconds = time.perf_counter() - clock
        registered = next(
            (
                v
                for v in list_versions(self.store, project=self.name)
                if v.lineage.get("autopilot", {}).get("job") == job
            ),
            None,
        )
        if registered is None:
            lineage = {
                "dataset": {"name": "events+traffic", "rows": len(data.frame)},
                # Served requests are validated against the schema the features came from.
                "schema_version": schema_version,
                "autopilot": {"job": job, **origin},
                "features": {"numeric": numeric, "categorical": categorical},
                "recipe": recipe.model_dump(mode="json"),
            }
            files = TABULAR.files(result, TABULAR.reference(result, data.frame))
            registered = self._register(files, result, lineage)
        index, evaluation = TABULAR.holdout(result)
        holdout = data.frame.iloc[index].reset_index(drop=True)
        decision = self._gate(result.model, evaluation, holdout=holdout, number=registered.version)
        return Retrained(version=registered, result=result, decision=decision, seconds=seconds)

    def _register(
        self, files: dict[str, bytes], result: TrainResult, lineage: dict[str, Any]
    ) -> ModelVersion:
        """Register a built model with its full lineage: data, recipe, split, code, packages."""
        full = {
            **lineage,
            "split": result.split,
            "code": code_version(self.root),
            "packages": package_versions(),
            "timings": result.timings,
        }
        return register_model(
            self.store,
            project=self.name,
            kind=TABULAR.name,
            files=files,
            lineage=full,
            metrics={"slices": result.metrics, "segments": result.segment_metrics},
            params=result.params,
        )

    def promote(self, version: int, *, reason: str = "", force: bool = False) -> GateDecision:
        """Put ``version`` through the gate; it becomes champion if it passes (or if forced)."""
        if isinstance(version, bool) or not isinstance(version, int):
            raise InvalidParameterError(
                owner="Project.promote", parameter="version", expected="an int", got=version
            )
        candidate = get_version(self.store, project=self.name, version=version)
        if alias_ops.get_alias(self.store.db, project=self.name, alias="champion") == version:
            return GateDecision(
                passed=True,
                metric=self.spec.metric,
                challenger=version,
                champion=version,
                n=0,
                reasons=[f"{self.name}@{version} is already the champion; nothing changed"],
            )
        name = candidate.lineage["dataset"]["name"]
        data_version = candidate.lineage["dataset"]["version"]
        frame, _ = load_dataset(self.store, project=self.name, name=name, version=data_version)
        # The gate reads the spec's target, timestamp and segments from this data.
        check_spec_columns(self.spec, list(frame.columns), where=f"dataset {name} v{data_version}")
        return self._judge(candidate, frame=frame, promote=True, force=force, reason=reason)

    def rollback(self, *, reason: str) -> int:
        """Give ``champion`` back to the version that held it before the current one.

        Repeated rollbacks walk further back (3 -> 2 -> 1), never flip-flop.
        """
        with self.store.db.write() as conn:
            previous = self.roll_back(conn, reason=reason, actor="user")
        if previous is None:
            raise SetpointError("Nothing to roll back to: no earlier champion.", project=self.name)
        return previous

    def roll_back(
        self, conn: Connection, *, reason: str, actor: str, only_from: int | None = None
    ) -> int | None:
        """``rollback`` inside the caller's transaction ``conn``; the version it gave
        ``champion`` to, or None when there is none (or, with ``only_from``, when the
        champion is no longer that version: someone moved it since)."""
        current = alias_ops.get_alias_in(conn, project=self.name, alias="champion")
        if only_from is not None and current != only_from:
            return None
        history = alias_ops.alias_history_of(self.store.db, project=self.name, alias="champion")
        held: list[int] = []
        for change in history:
            if change.kind is alias_ops.AliasKind.ROLLBACK and held:
                held.pop()
            elif change.version is not None and held[-1:] != [change.version]:
                # Promoting the champion again is no change of hands to undo.
                held.append(change.version)
        if len(held) < 2:
            return None
        previous = held[-2]
        alias_ops.set_alias(
            conn,
            project=self.name,
            alias="champion",
            version=previous,
            kind=alias_ops.AliasKind.ROLLBACK,
            reason=reason,
            actor=actor,
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
        ref = self._number(ref)
        version = get_version(self.store, project=self.name, version=ref)
        if version.kind != TABULAR.name:
            raise ConfigError(
                f"Model {self.name}@{ref} is a {version.kind!r} model, not a tabular one.",
                kind=version.kind,
            )
        threads: int = get_settings().num_threads
        model: TabularModel = TABULAR.load(load_artifacts(self.store, version), num_threads=threads)
        return model

    def load_reference(self, ref: int | str = "champion") -> MonitoringReference:
        """The monitoring reference ``ref`` was registered with (sha256-checked).

        Raises ``ConfigError`` naming the version when it was registered before
        models carried a reference.
        """
        number = self._number(ref)
        found = get_version(self.store, project=self.name, version=number)
        if REFERENCE_FILE not in found.artifacts:
            raise ConfigError(
                f"Model {self.name}@{number} has no monitoring reference ({REFERENCE_FILE}): "
                "it was registered before models carried one. Retrain ('setpoint train') and "
                "promote the new version to monitor against it.",
                version=number,
            )
        data = load_artifacts(self.store, found)[REFERENCE_FILE]
        return MonitoringReference.from_bytes(data, where=f"model {self.name}@{number}")

    # Internals ------------------------------------------------------------------------
    def _number(self, ref: int | str) -> int:
        if isinstance(ref, str):
            number = alias_ops.get_alias(self.store.db, project=self.name, alias=ref)
            if number is None:
                raise NotFoundError(kind="alias", name=ref, hint="Train and promote a model first.")
            return number
        return ref

    def _judge(
        self,
        candidate: ModelVersion,
        *,
        frame: pd.DataFrame,
        promote: bool,
        force: bool = False,
        reason: str = "",
    ) -> GateDecision:
        challenger = self.load_model(candidate.version)
        decision = self._decide(challenger, number=candidate.version, frame=frame)
        self._record(decision, promote=promote, force=force, reason=reason)
        return decision

    def _decide(
        self, challenger: TabularModel, *, number: int, frame: pd.DataFrame
    ) -> GateDecision:
        """The gate's verdict on ``challenger`` (version ``number``); nothing is written."""
        if (challenger.task, challenger.target) != (self.spec.task, self.spec.target):
            raise ConfigError(
                f"Model {self.name}@{number} predicts {challenger.target!r} "
                f"({challenger.task.value}), but the spec now says {self.spec.target!r} "
                f"({self.spec.task.value}): the gate cannot judge it on this spec.",
                version=number,
            )
        holdout = self._holdout(frame)
        evaluation = TABULAR.evaluate(challenger, holdout, target=self.spec.target)
        return self._gate(challenger, evaluation, holdout=holdout, number=number)

    def _gate(
        self,
        challenger: TabularModel,
        evaluation: Evaluation,
        *,
        holdout: pd.DataFrame,
        number: int,
    ) -> GateDecision:
        """``challenger`` (scored ``evaluation`` on ``holdout``) against the champion."""
        champion_number = alias_ops.get_alias(self.store.db, project=self.name, alias="champion")
        if champion_number == number:
            champion_number = None
        champion_evaluation = None
        if champion_number is not None:
            champion = self.load_model(champion_number)
            if (champion.task, champion.target, champion.classes) != (
                challenger.task,
                challenger.target,
                challenger.classes,
            ):
                # The spec's task, target or classes changed since the champion was
                # trained: their scores are not comparable row by row.
                return GateDecision(
                    passed=False,
                    metric=self.spec.metric,
                    challenger=number,
                    champion=champion_number,
                    n=len(evaluation.labels),
                    reasons=[
                        f"the champion @{champion_number} predicts {champion.target!r} "
                        f"({champion.task.value}, classes {champion.classes}), this model "
                        f"{challenger.target!r} ({challenger.task.value}, classes "
                        f"{challenger.classes}): not comparable; promote it with --force"
                    ],
                )
            champion_evaluation = TABULAR.evaluate(champion, holdout, target=self.spec.target)
        return gate.judge(
            self.spec,
            holdout=holdout,
            challenger=evaluation,
            champion=champion_evaluation,
            challenger_version=number,
            champion_version=champion_number,
        )

    def _record(
        self, decision: GateDecision, *, promote: bool, force: bool = False, reason: str = ""
    ) -> None:
        """Store the decision and move the alias it earns, in one transaction."""
        candidate = decision.challenger
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
                    version=candidate,
                    kind=alias_ops.AliasKind.PROMOTE,
                    reason=why,
                    actor="user" if force else "gate",
                )
            elif promote:
                alias_ops.set_alias(
                    conn,
                    project=self.name,
                    alias="challenger",
                    version=candidate,
                    kind=alias_ops.AliasKind.CHALLENGER,
                    reason="gate not passed: " + "; ".join(decision.reasons),
                    actor="gate",
                )

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
