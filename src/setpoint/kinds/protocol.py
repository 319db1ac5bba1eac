"""What a kind of model gives the rest of the lifecycle.

The registry stores a model version as a ``kind`` name and a manifest of named,
sha256-addressed files; it never looks inside them. Everything that does is a
``ModelKind``:

- ``build``: a model from the rows of a dataset version (or of an as-of
  training set), with its metrics on the held-out slice;
- ``holdout``: the held-out rows' labels and the model's per-example scores on
  them, which the gate compares with the champion's, example by example;
- ``evaluate``: any model's per-example scores on given rows (the champion's on
  the challenger's holdout);
- ``reference``: what monitoring compares live traffic with, summarised once at
  registration from the held-out rows;
- ``files`` and ``load``: the artifacts it writes (no pickles) and the model
  read back from them, after the registry has checked every sha256.

How a kind answers a request is its server-side scorer (``serve/scorer.py``
for the tabular kind); the registry, gate, monitor and autopilot read only
what is above.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from setpoint._json import jsonable
from setpoint.config.spec import ModelRecipe, ProjectSpec
from setpoint.errors import ConfigError
from setpoint.stats.cbpe import CalibrationCheck
from setpoint.stats.reference import Reference

__all__ = [
    "LABEL_COLUMN",
    "PREDICTION_COLUMN",
    "REFERENCE_FILE",
    "Evaluation",
    "ModelKind",
    "MonitoringReference",
]

# A model's monitoring reference, stored beside its files.
REFERENCE_FILE = "reference.json"
# The reference's columns for the model's score and predicted class.
PREDICTION_COLUMN = "__prediction__"
LABEL_COLUMN = "__predicted_label__"
_FORMAT = "setpoint.reference/1"

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Encoded labels and a model's score for each of the same rows, in row order."""

    labels: FloatArray
    scores: FloatArray


@dataclass(frozen=True)
class MonitoringReference:
    """What a model version is monitored against: its reference and decision threshold.

    ``rows`` is how many held-out rows it summarises.
    """

    reference: Reference
    calibration: CalibrationCheck | None
    threshold: float | None

    @property
    def rows(self) -> int:
        return self.reference.n_rows

    def to_bytes(self) -> bytes:
        document: dict[str, Any] = {
            "format": _FORMAT,
            "rows": self.reference.n_rows,
            "reference": self.reference.to_dict(),
            "threshold": self.threshold,
        }
        if self.calibration is not None:
            document["calibration"] = self.calibration.to_dict()
        return (json.dumps(jsonable(document), sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes, *, where: str) -> MonitoringReference:
        """The reference ``to_bytes`` wrote; ``ConfigError`` naming ``where`` otherwise."""
        try:
            document = json.loads(data)
            calibration = document.get("calibration")
            check = None
            if calibration is not None:
                bins = tuple(tuple(b) for b in calibration.get("bins", ()))
                check = CalibrationCheck(**{**calibration, "bins": bins})
            threshold = document.get("threshold")
            return cls(
                reference=Reference.from_dict(document["reference"]),
                calibration=check,
                threshold=None if threshold is None else float(threshold),
            )
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ConfigError(f"{where}: not a monitoring reference: {exc}") from None


class ModelKind(Protocol):
    """One kind of model, as the registry, gate, monitor and autopilot see it."""

    @property
    def name(self) -> str:
        """The registry's ``kind`` of its versions, with a format version: ``tabular/v1``."""
        ...

    def build(
        self,
        frame: pd.DataFrame,
        *,
        spec: ProjectSpec,
        recipe: ModelRecipe,
        numeric: Sequence[str],
        categorical: Sequence[str],
        weights: npt.ArrayLike | None = None,
        progress: Callable[[str, float], None] | None = None,
    ) -> Any:
        """A model trained by ``recipe`` on the columns named, evaluated on its held-out slice.

        ``weights`` weigh the training rows; ``progress(stage, fraction)`` hears of the work.
        """
        ...

    def holdout(self, built: Any) -> tuple[npt.NDArray[np.int64], Evaluation]:
        """The held-out rows' positions in the training frame, their labels and scores."""
        ...

    def evaluate(self, model: Any, frame: pd.DataFrame, *, target: str) -> Evaluation:
        """``model``'s score of each row of ``frame`` against its ``target``."""
        ...

    def reference(self, built: Any, frame: pd.DataFrame) -> MonitoringReference:
        """The monitoring reference of a built model, from its held-out rows of ``frame``."""
        ...

    def files(self, built: Any, reference: MonitoringReference) -> dict[str, bytes]:
        """The artifacts of a version: the model's files and its reference."""
        ...

    def load(self, files: Mapping[str, bytes], *, num_threads: int = 0) -> Any:
        """The model read back from its (already sha256-checked) files."""
        ...
