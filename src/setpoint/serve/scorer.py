"""One loaded model version, ready to answer: validation, scoring, explanations.

A :class:`Scorer` is built off the request path (``load_scorer``) and then
only read, so that swapping the champion is replacing one reference: a request
in flight keeps the scorer it started with.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from setpoint.config.spec import Task
from setpoint.data.schema import Schema
from setpoint.errors import ConfigError
from setpoint.kinds.tabular import TABULAR
from setpoint.project import Project
from setpoint.registry.datasets import get_schema
from setpoint.registry.models import get_version, load_artifacts
from setpoint.serve.validation import RequestValidator
from setpoint.train.tabular_model import TabularModel, json_safe_label

__all__ = ["INLINE_RECORDS", "Scored", "Scorer", "example_record", "load_scorer"]

# Below this many records the model is called on the event loop: handing the
# work to a thread costs more than LightGBM takes for a few rows.
INLINE_RECORDS = 32


@dataclass(frozen=True, slots=True)
class Scored:
    """The answer for a batch: one JSON-ready prediction per record."""

    predictions: list[dict[str, Any]]
    outputs: list[Any]  # what the prediction log keeps per record


@dataclass(slots=True)
class Scorer:
    """A model version with the validator of the schema it was trained on."""

    version: int
    model: TabularModel
    validator: RequestValidator
    artifacts: dict[str, str]
    loaded_at: float = field(default_factory=time.time)

    def score(self, records: list[dict[str, Any]], *, explain: int = 0) -> Scored:
        """Validate ``records`` and predict; ``explain`` > 0 adds that many contributions.

        Raises ``InvalidRequestError`` for records the validator refuses.
        """
        batch = self.validator.validate(records)
        model = self.model
        matrix = model.preprocessor.transform_checked(batch.columns)
        scores = model.predict_matrix(matrix, num_threads=1)
        predictions = _predictions(model, scores)
        if explain:
            _explain(model, matrix, predictions, top=explain)
        outputs: list[Any] = []
        for prediction, flags in zip(predictions, batch.flags, strict=True):
            if flags:
                prediction["flags"] = [
                    {"field": f.field, "kind": f.kind, "detail": f.detail} for f in flags
                ]
            outputs.append({k: v for k, v in prediction.items() if k != "contributions"})
        return Scored(predictions=predictions, outputs=outputs)

    def describe(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "family": self.model.family,
            "features": self.model.features,
            "artifacts": self.artifacts,
            "loaded_at": self.loaded_at,
        }


def _predictions(model: TabularModel, scores: np.ndarray) -> list[dict[str, Any]]:
    classes = [json_safe_label(c) for c in model.classes]
    if model.task is Task.REGRESSION:
        return [{"value": float(v)} for v in scores.tolist()]
    if model.task is Task.BINARY:
        threshold = model.threshold_value
        negative, positive = classes
        return [
            {"label": positive if s >= threshold else negative, "score": s} for s in scores.tolist()
        ]
    names = [str(c) for c in classes]
    return [
        {"label": classes[int(np.argmax(row))], "scores": dict(zip(names, row, strict=True))}
        for row in scores.tolist()
    ]


def _explain(
    model: TabularModel, matrix: np.ndarray, predictions: list[dict[str, Any]], *, top: int
) -> None:
    contrib = model.head.contributions(matrix)
    sources = model.preprocessor.source_columns()
    names = model.features
    position = {name: i for i, name in enumerate(names)}
    # One-hot columns (linear models) add up to the input column they came from.
    owner = np.array([position[s] for s in sources])
    for i, prediction in enumerate(predictions):
        k = 0
        if contrib.shape[1] > 1:  # multiclass: explain the predicted class
            k = int(np.argmax(list(prediction["scores"].values())))
        per_input = np.zeros(len(names))
        np.add.at(per_input, owner, contrib[i, k, :-1])
        order = np.argsort(-np.abs(per_input), kind="stable")[:top]
        prediction["contributions"] = [
            {"feature": names[j], "value": float(per_input[j])}
            for j in order
            if math.isfinite(per_input[j])
        ]


def load_scorer(
    project: Project,
    version: int,
    *,
    on_invalid: Literal["reject", "impute"],
    unseen_category: Literal["reject", "accept"] = "accept",
    max_batch: int,
) -> Scorer:
    """Load ``version`` (artifacts checked against their sha256), build its validator, warm it.

    Raises ``ArtifactIntegrityError`` for a corrupted artifact, ``TrainingError``
    for files that are not a model and ``ConfigError`` for a version that is not
    a tabular model.
    """
    found = get_version(project.store, project=project.name, version=version)
    if found.kind != TABULAR.name:
        raise ConfigError(
            f"Model {project.name}@{version} is a {found.kind!r} model; setpoint serve "
            "serves tabular models.",
            kind=found.kind,
        )
    model = TabularModel.from_files(load_artifacts(project.store, found), num_threads=1)
    schema_version = found.lineage.get("schema_version")
    if not isinstance(schema_version, int):
        raise ConfigError(f"Model {project.name}@{version} records no schema version.")
    schema = get_schema(project.store, project=project.name, version=schema_version)
    validator = RequestValidator(
        schema,
        features=model.features,
        on_invalid=on_invalid,
        unseen_category=unseen_category,
        max_batch=max_batch,
    )
    scorer = Scorer(version=version, model=model, validator=validator, artifacts=found.artifacts)
    # The first call builds LightGBM's buffers: pay it here, not on a live request.
    scorer.score([example_record(schema, model.features)], explain=1)
    return scorer


def example_record(schema: Schema, features: list[str]) -> dict[str, Any]:
    """A valid record of ``schema``: mid-range numbers and the first category."""
    record: dict[str, Any] = {}
    for name in features:
        col = schema.column(name)
        if col.kind == "numeric":
            low = col.min if col.min is not None else 0.0
            high = col.max if col.max is not None else low
            record[name] = (low + high) / 2
        else:
            record[name] = col.categories[0] if col.categories else "a"
    return record
