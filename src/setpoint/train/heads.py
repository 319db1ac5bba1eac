"""Model families as prediction heads over the preprocessed matrix.

A head turns the ``Preprocessor`` output into raw scores: the positive-class
probability (binary), an ``(n, k)`` probability matrix (multiclass) or values
(regression). Each serialises to one file: LightGBM's own text format, or a
JSON table of linear coefficients applied with numpy (no scikit-learn at
prediction time).
"""

from __future__ import annotations

import json
import logging
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
import numpy.typing as npt

from setpoint.errors import TrainingError
from setpoint.train.fastrow import RowPredictor

__all__ = ["Head", "LightGBMHead", "LinearHead", "load_head"]

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
LinearKind = Literal["logistic", "softmax", "identity"]


class Head(Protocol):
    family: ClassVar[str]
    filename: ClassVar[str]

    @property
    def n_features(self) -> int: ...

    def predict(self, matrix: FloatArray, *, num_threads: int = 0) -> FloatArray: ...

    def importance(self) -> FloatArray: ...

    def contributions(self, matrix: FloatArray) -> FloatArray: ...

    def to_bytes(self) -> bytes: ...


class LightGBMHead:
    """A LightGBM booster kept as its text model; the booster is built on first use."""

    family: ClassVar[str] = "lightgbm"
    filename: ClassVar[str] = "model.txt"

    def __init__(self, model_text: str) -> None:
        import lightgbm as lgb

        self.model_text = model_text
        try:
            self._booster = lgb.Booster(model_str=model_text)
        except lgb.basic.LightGBMError as exc:
            raise TrainingError(f"The LightGBM model text cannot be read: {exc}") from exc
        self._row: RowPredictor | None = None
        self._row_failed = False

    @property
    def n_features(self) -> int:
        return int(self._booster.num_feature())

    @property
    def num_trees(self) -> int:
        return int(self._booster.num_trees())

    def predict(self, matrix: FloatArray, *, num_threads: int = 0) -> FloatArray:
        if matrix.shape[0] == 0:  # LightGBM refuses empty input
            classes = int(self._booster.num_model_per_iteration())
            return np.zeros((0, classes) if classes > 1 else 0)
        if matrix.shape[0] == 1 and not self._row_failed:
            row = self._row or self._row_predictor()
            if row is not None:
                return row.predict(matrix)
        out = self._booster.predict(matrix, num_threads=num_threads)
        return np.asarray(out, dtype=np.float64)

    def _row_predictor(self) -> RowPredictor | None:
        try:
            self._row = RowPredictor(
                self.model_text,
                n_features=self.n_features,
                n_outputs=int(self._booster.num_model_per_iteration()),
            )
        except TrainingError as exc:  # the general path still works, only slower
            log.warning("one-row LightGBM predictions fall back to Booster.predict: %s", exc)
            self._row_failed = True
        return self._row

    def importance(self) -> FloatArray:
        return np.asarray(self._booster.feature_importance(importance_type="gain"), np.float64)

    def contributions(self, matrix: FloatArray) -> FloatArray:
        """``(n, k, n_features + 1)`` raw-score contributions (SHAP values by TreeSHAP),
        the last column the expected value; ``k`` is 1 except for multiclass."""
        out = np.asarray(
            self._booster.predict(matrix, pred_contrib=True, num_threads=1), np.float64
        )
        return out.reshape(matrix.shape[0], -1, self.n_features + 1)

    def to_bytes(self) -> bytes:
        return self.model_text.encode("utf-8")


class LinearHead:
    """``kind(matrix @ coef.T + intercept)`` with coefficients stored as JSON."""

    family: ClassVar[str] = "linear"
    filename: ClassVar[str] = "linear.json"

    def __init__(self, *, kind: LinearKind, coef: FloatArray, intercept: FloatArray) -> None:
        coef = np.atleast_2d(np.asarray(coef, dtype=np.float64))
        intercept = np.atleast_1d(np.asarray(intercept, dtype=np.float64))
        if kind not in ("logistic", "softmax", "identity") or coef.shape[0] != intercept.shape[0]:
            raise TrainingError(
                f"Inconsistent linear model: kind {kind!r}, coef {coef.shape}, "
                f"intercept {intercept.shape}."
            )
        self.kind: LinearKind = kind
        self.coef = coef
        self.intercept = intercept

    @property
    def n_features(self) -> int:
        return int(self.coef.shape[1])

    def predict(self, matrix: FloatArray, *, num_threads: int = 0) -> FloatArray:
        z = matrix @ self.coef.T + self.intercept
        if self.kind == "softmax":
            z = z - z.max(axis=1, keepdims=True)  # exp cannot overflow after the shift
            e = np.exp(z)
            return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float64)
        z = z[:, 0]
        if self.kind == "logistic":
            return np.asarray(np.exp(-np.logaddexp(0.0, -z)), dtype=np.float64)
        return np.asarray(z, dtype=np.float64)

    def contributions(self, matrix: FloatArray) -> FloatArray:
        """``(n, k, n_features + 1)``: each standardised input times its coefficient,
        the intercept last (exact for a linear model)."""
        terms = matrix[:, None, :] * self.coef[None, :, :]
        bias = np.broadcast_to(
            self.intercept[None, :, None], (matrix.shape[0], *self.intercept.shape, 1)
        )
        return np.concatenate([terms, bias], axis=2)

    def importance(self) -> FloatArray:
        # Inputs are standardised, so coefficient sizes are comparable.
        return np.asarray(np.abs(self.coef).sum(axis=0), dtype=np.float64)

    def to_bytes(self) -> bytes:
        payload = {
            "kind": self.kind,
            "coef": self.coef.tolist(),
            "intercept": self.intercept.tolist(),
        }
        return (json.dumps(payload, sort_keys=True) + "\n").encode("utf-8")

    @classmethod
    def from_bytes(cls, raw: bytes) -> LinearHead:
        try:
            payload: dict[str, Any] = json.loads(raw)
            return cls(
                kind=payload["kind"],
                coef=np.asarray(payload["coef"], dtype=np.float64),
                intercept=np.asarray(payload["intercept"], dtype=np.float64),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TrainingError(f"The linear model file is malformed: {exc}") from exc


def load_head(family: str, raw: bytes) -> LightGBMHead | LinearHead:
    """Rebuild a head from the bytes of its file."""
    if family == LightGBMHead.family:
        try:
            return LightGBMHead(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise TrainingError(f"The LightGBM model file is not text: {exc}") from exc
    if family == LinearHead.family:
        return LinearHead.from_bytes(raw)
    raise TrainingError(f"Unknown model family {family!r}; expected 'lightgbm' or 'linear'.")
