"""A trained tabular model and its file format.

``TabularModel.to_files()`` returns a few small files, all text:

* ``model.json``: what the model is (format version, task, target, features,
  class labels, calibration table, decision threshold);
* ``preprocess.json``: the ``Preprocessor``;
* ``model.txt`` (LightGBM's text format) or ``linear.json`` (coefficients).

Nothing is pickled, so loading a model never executes code from the files.
``from_files`` checks the format and, if asked, the task before building anything.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from setpoint.config.spec import Task
from setpoint.errors import ConfigError, DataError, TrainingError
from setpoint.train.calibrate import Calibrator, ThresholdChoice
from setpoint.train.heads import LightGBMHead, LinearHead, load_head
from setpoint.train.preprocess import Columns, Preprocessor

__all__ = ["FORMAT", "FORMAT_VERSION", "TabularModel", "json_safe_label"]

FORMAT = "setpoint.tabular"
FORMAT_VERSION = 1
META_FILE = "model.json"
PREPROCESS_FILE = "preprocess.json"
_MODE = {"lightgbm": "tree", "linear": "linear"}


def _dump(payload: Mapping[str, Any]) -> bytes:
    # Sorted keys and a fixed layout make the bytes a function of the content.
    return (json.dumps(payload, sort_keys=True, indent=2, allow_nan=False) + "\n").encode()


def _load(files: Mapping[str, bytes], name: str) -> Any:
    if name not in files:
        raise TrainingError(f"The model files lack {name!r} (got {sorted(files)}).")
    try:
        return json.loads(files[name])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TrainingError(f"{name} is not valid JSON: {exc}") from exc


class TabularModel:
    """Everything needed to score raw rows: preprocessing, model, calibration, threshold.

    Built by ``train_model`` or ``from_files``. The constructor checks that the
    parts fit together, since a model that loads but mis-scores is worse than
    one that refuses to load.
    """

    def __init__(
        self,
        *,
        task: Task,
        target: str,
        preprocessor: Preprocessor,
        head: LightGBMHead | LinearHead,
        classes: Sequence[Any] = (),
        calibrator: Calibrator | None = None,
        threshold: ThresholdChoice | None = None,
        num_threads: int = 0,
    ) -> None:
        self.task = Task(task)
        self.target = target
        self.preprocessor = preprocessor
        self.head = head
        self.classes = classes
        self.calibrator = calibrator
        self.threshold = threshold
        self.num_threads = num_threads
        self._check()

    def _check(self) -> None:
        wanted_classes = {Task.BINARY: "2", Task.MULTICLASS: "2 or more", Task.REGRESSION: "0"}
        count = len(self.classes)
        ok = {Task.BINARY: count == 2, Task.MULTICLASS: count >= 2, Task.REGRESSION: count == 0}
        if not ok[self.task]:
            raise TrainingError(
                f"A {self.task.value} model needs {wanted_classes[self.task]} class labels, "
                f"got {self.classes!r}."
            )
        if self.preprocessor.mode != _MODE[self.head.family]:
            raise TrainingError(
                f"A {self.head.family} model needs a {_MODE[self.head.family]!r} preprocessor, "
                f"got {self.preprocessor.mode!r}."
            )
        expected = len(self.preprocessor.feature_names_out())
        if self.head.n_features != expected:
            raise TrainingError(
                f"The model reads {self.head.n_features} columns but the preprocessor "
                f"makes {expected}."
            )

    @property
    def family(self) -> str:
        return self.head.family

    @property
    def features(self) -> list[str]:
        """Input columns, numeric first."""
        return [*self.preprocessor.numeric, *self.preprocessor.categorical]

    @property
    def threshold_value(self) -> float:
        return self.threshold.value if self.threshold is not None else 0.5

    def predict_scores(
        self, data: Columns, *, num_threads: int | None = None, calibrated: bool = True
    ) -> npt.NDArray[np.float64]:
        """Positive-class probability (binary), ``(n, k)`` class probabilities
        (multiclass, columns in ``classes`` order) or values (regression)."""
        matrix = self.preprocessor.transform(data)
        return self.predict_matrix(matrix, num_threads=num_threads, calibrated=calibrated)

    def predict_matrix(
        self,
        matrix: npt.NDArray[np.float64],
        *,
        num_threads: int | None = None,
        calibrated: bool = True,
    ) -> npt.NDArray[np.float64]:
        """``predict_scores`` of a matrix the preprocessor has already made."""
        threads = self.num_threads if num_threads is None else num_threads
        raw = self.head.predict(matrix, num_threads=threads)
        if calibrated and self.task is Task.BINARY and self.calibrator is not None:
            return self.calibrator.transform(raw)
        return raw

    def predict(self, data: Columns, *, num_threads: int | None = None) -> npt.NDArray[Any]:
        """Labels (binary via the threshold, multiclass via the most probable class)
        or values (regression)."""
        scores = self.predict_scores(data, num_threads=num_threads)
        if self.task is Task.REGRESSION:
            return scores
        labels = np.asarray(self.classes)
        if self.task is Task.BINARY:
            return np.asarray(labels[(scores >= self.threshold_value).astype(np.intp)])
        return np.asarray(labels[scores.argmax(axis=1)])

    def encode_labels(self, values: Any) -> npt.NDArray[np.float64]:
        """Raw target values as the metrics expect them: 0/1 (binary, 1 is
        ``classes[1]``), class codes (multiclass) or numbers (regression).

        Raises ``DataError`` for a missing value or a label the model never saw.
        """
        to_numpy = getattr(values, "to_numpy", None)
        raw = np.ravel(to_numpy() if to_numpy is not None else np.asarray(values, dtype=object))
        if self.task is Task.REGRESSION:
            return np.asarray(raw, dtype=np.float64)
        lookup = {label: float(code) for code, label in enumerate(self.classes)}
        codes = np.full(raw.size, np.nan)
        for i, value in enumerate(raw.tolist()):
            codes[i] = lookup.get(value, np.nan)  # 1.0 finds 1 and np.True_ finds True
        if np.isnan(codes).any():
            unknown = sorted({repr(v) for v in raw[np.isnan(codes)].tolist()})
            raise DataError(
                f"{self.target!r} has values the model does not know: {', '.join(unknown[:5])} "
                f"(it knows {self.classes})."
            )
        return codes

    def feature_importance(self) -> dict[str, float]:
        """Importance per input column, largest first: total split gain for
        LightGBM, summed absolute standardised coefficients for linear models."""
        totals = dict.fromkeys(self.features, 0.0)
        for source, value in zip(
            self.preprocessor.source_columns(), self.head.importance(), strict=True
        ):
            totals[source] += float(value)
        return dict(sorted(totals.items(), key=lambda item: (-item[1], item[0])))

    def meta(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "task": self.task.value,
            "target": self.target,
            "family": self.family,
            "features": {
                "numeric": list(self.preprocessor.numeric),
                "categorical": list(self.preprocessor.categorical),
            },
            "classes": list(self.classes),
            "calibrator": self.calibrator.to_dict() if self.calibrator is not None else None,
            "threshold": self.threshold.to_dict() if self.threshold is not None else None,
            "files": {"preprocess": PREPROCESS_FILE, "model": self.head.filename},
        }

    def to_files(self) -> dict[str, bytes]:
        return {
            META_FILE: _dump(self.meta()),
            PREPROCESS_FILE: _dump(self.preprocessor.to_dict()),
            self.head.filename: self.head.to_bytes(),
        }

    @classmethod
    def from_files(
        cls, files: Mapping[str, bytes], *, task: Task | str | None = None, num_threads: int = 0
    ) -> TabularModel:
        """Load from ``to_files()`` output; ``task`` (if given) must match the model's.

        Raises ``TrainingError`` for missing, malformed or unsupported files and
        ``ConfigError`` when the model's task is not ``task``.
        """
        meta = _load(files, META_FILE)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise TrainingError(f"{META_FILE} is not a setpoint tabular model description.")
        version = meta.get("format_version")
        if version != FORMAT_VERSION:
            raise TrainingError(
                f"The model has format version {version!r}; this setpoint reads version "
                f"{FORMAT_VERSION}. Retrain it or use a matching setpoint."
            )
        try:
            own_task = Task(meta["task"])
            family = str(meta["family"])
            model_file = str(meta["files"]["model"])
            features = [list(meta["features"]["numeric"]), list(meta["features"]["categorical"])]
        except (KeyError, TypeError, ValueError) as exc:
            raise TrainingError(f"{META_FILE} is malformed: {exc!r}") from exc
        if task is not None and own_task.value != str(task):
            raise ConfigError(
                f"The model was trained for a {own_task.value} task, not {str(task)!r}.",
                expected=str(task),
                got=own_task.value,
            )
        preprocessor = Preprocessor.from_dict(_load(files, PREPROCESS_FILE))
        if [list(preprocessor.numeric), list(preprocessor.categorical)] != features:
            raise TrainingError(f"{META_FILE} and {PREPROCESS_FILE} list different features.")
        if model_file not in files:
            raise TrainingError(f"The model files lack {model_file!r} (got {sorted(files)}).")
        head = load_head(family, files[model_file])
        calibrator = meta.get("calibrator")
        threshold = meta.get("threshold")
        return cls(
            task=own_task,
            target=str(meta.get("target", "")),
            preprocessor=preprocessor,
            head=head,
            classes=list(meta.get("classes") or []),
            calibrator=Calibrator.from_dict(calibrator) if calibrator else None,
            threshold=ThresholdChoice.from_dict(threshold) if threshold else None,
            num_threads=num_threads,
        )

    def __repr__(self) -> str:
        return (
            f"TabularModel(task={self.task.value!r}, family={self.family!r}, "
            f"target={self.target!r}, features={len(self.features)})"
        )


def json_safe_label(value: Any) -> Any:
    """A class label as a JSON value; raises ``TrainingError`` if it has none.

    >>> [json_safe_label(v) for v in [np.int64(3), np.True_, "a", 2.5]]
    [3, True, 'a', 2.5]
    """
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | str) or (isinstance(value, float) and math.isfinite(value)):
        return value
    raise TrainingError(
        f"Class label {value!r} ({type(value).__name__}) cannot be stored; "
        "labels must be strings, integers, finite floats or booleans."
    )
