"""The tabular kind: LightGBM or linear models on a table's numeric and categorical columns.

Built by ``train.trainer.train_model``; stored as LightGBM's text format plus
JSON documents (``train/tabular_model.py``), and the monitoring reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from setpoint.config.spec import ModelRecipe, ProjectSpec, SplitSpec, Task
from setpoint.kinds.protocol import (
    LABEL_COLUMN,
    PREDICTION_COLUMN,
    REFERENCE_FILE,
    Evaluation,
    MonitoringReference,
)
from setpoint.stats.cbpe import calibration_check
from setpoint.stats.reference import Reference
from setpoint.train.tabular_model import TabularModel
from setpoint.train.trainer import ProgressCallback, TrainResult, train_model

__all__ = ["TABULAR", "TabularKind"]


class TabularKind:
    """The ``tabular/v1`` kind (see ``kinds/protocol.py`` for what each method promises)."""

    name = "tabular/v1"

    def recipe(
        self, spec: ProjectSpec, *, num_threads: int = 0, split: SplitSpec | None = None
    ) -> ModelRecipe:
        """The spec's recipe, with ``split`` and the thread count where the spec sets none."""
        recipe = spec.model
        params = dict(recipe.params)
        if num_threads and recipe.family == "lightgbm":
            params.setdefault("num_threads", num_threads)
        update: dict[str, Any] = {"params": params}
        if split is not None:
            update["split"] = split
        return recipe.model_copy(update=update)

    def build(
        self,
        frame: pd.DataFrame,
        *,
        spec: ProjectSpec,
        recipe: ModelRecipe,
        numeric: Sequence[str],
        categorical: Sequence[str],
        weights: npt.ArrayLike | None = None,
        progress: ProgressCallback | None = None,
    ) -> TrainResult:
        return train_model(
            frame,
            task=spec.task,
            target=spec.target,
            features_numeric=numeric,
            features_categorical=categorical,
            timestamp=spec.timestamp,
            recipe=recipe,
            segments=spec.segments,
            primary_metric=spec.metric,
            progress=progress,
            sample_weight=weights,
        )

    def holdout(self, built: TrainResult) -> tuple[npt.NDArray[np.int64], Evaluation]:
        return built.test_index, Evaluation(labels=built.test_labels, scores=built.test_scores)

    def evaluate(self, model: TabularModel, frame: pd.DataFrame, *, target: str) -> Evaluation:
        return Evaluation(
            labels=model.encode_labels(frame[target]),
            scores=np.asarray(model.predict_scores(frame), dtype=np.float64),
        )

    def reference(self, built: TrainResult, frame: pd.DataFrame) -> MonitoringReference:
        """The held-out slice with the model's own scores: the most recent rows it did not
        learn from, so that prediction drift and the calibration behind label-free
        estimates are judged on unseen rows."""
        model = built.model
        numeric, categorical = (
            list(model.preprocessor.numeric),
            list(model.preprocessor.categorical),
        )
        test = frame.iloc[built.test_index]
        columns: dict[str, Any] = {name: test[name].to_numpy() for name in [*numeric, *categorical]}
        prediction = label = None
        calibration = None
        if model.task is Task.BINARY:
            columns[PREDICTION_COLUMN] = built.test_scores
            columns[LABEL_COLUMN] = (built.test_scores >= model.threshold_value).astype(int)
            prediction, label = PREDICTION_COLUMN, LABEL_COLUMN
            calibration = calibration_check(built.test_scores, built.test_labels)
        elif model.task is Task.REGRESSION:
            columns[PREDICTION_COLUMN] = built.test_scores
            prediction = PREDICTION_COLUMN
        reference = Reference.build(
            columns, numeric=numeric, categorical=categorical, prediction=prediction, label=label
        )
        threshold = model.threshold_value if model.task is Task.BINARY else None
        return MonitoringReference(
            reference=reference, calibration=calibration, threshold=threshold
        )

    def files(self, built: TrainResult, reference: MonitoringReference) -> dict[str, bytes]:
        files = built.model.to_files()
        files[REFERENCE_FILE] = reference.to_bytes()
        return files

    def load(self, files: Mapping[str, bytes], *, num_threads: int = 0) -> TabularModel:
        model = {name: data for name, data in files.items() if name != REFERENCE_FILE}
        return TabularModel.from_files(model, num_threads=num_threads)


TABULAR = TabularKind()
