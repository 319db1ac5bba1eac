"""Batched metric kernels shared by ``metrics`` and ``bootstrap``.

A kernel scores a :class:`Sample`: ``B`` replicates, each a list of row
indices (a plain evaluation is one replicate of every row once; a bootstrap
resample draws rows with replacement). Results have shape ``(B,)``.

Everything reduces to three vectorised primitives so that a thousand
replicates on tens of thousands of rows take about a second:

* means of a per-row quantity, gathered through the indices;
* histograms of a small per-row code (a confusion matrix, the class and
  tie-run of a score) with one ``bincount`` over all replicates;
* for ranking metrics with many distinct scores, cumulative sums of row
  counts in score order, the order being sorted once per kernel.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

__all__ = ["BinaryKernel", "Kernel", "MulticlassKernel", "RegressionKernel", "Sample"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
_EPS = float(np.finfo(np.float64).eps)


class Sample:
    """``indices[b]`` are the rows (out of ``rows``) drawn in replicate ``b``."""

    def __init__(self, indices: IntArray, rows: int) -> None:
        self.indices = indices
        self.rows = rows

    @classmethod
    def everything(cls, rows: int) -> Sample:
        return cls(np.arange(rows, dtype=np.int64)[None, :], rows)

    @property
    def replicates(self) -> int:
        return int(self.indices.shape[0])

    def histogram(self, codes: IntArray, bins: int) -> FloatArray:
        """``(B, bins)`` counts of ``codes`` (one small integer per row) per replicate."""
        offsets = (np.arange(self.replicates, dtype=np.int64) * bins)[:, None]
        flat = np.bincount(
            (codes[self.indices] + offsets).ravel(), minlength=self.replicates * bins
        )
        return flat.reshape(self.replicates, bins).astype(np.float64)

    def mean(self, values: FloatArray) -> FloatArray:
        if self.indices.shape[1] == 0:
            return np.full(self.replicates, np.nan)
        return np.asarray(values[self.indices].mean(axis=1), dtype=np.float64)


class Kernel(Protocol):
    names: tuple[str, ...]

    def batch(self, name: str, sample: Sample) -> FloatArray: ...


def _ratio(num: FloatArray, den: FloatArray) -> FloatArray:
    """``num / den`` with NaN where ``den`` is 0, without a floating-point warning."""
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


class _Ranking:
    """Scores sorted once, descending, grouped into runs of equal score."""

    def __init__(self, positive: npt.NDArray[np.bool_], scores: FloatArray) -> None:
        self.order = np.argsort(-scores, kind="stable")
        ordered = scores[self.order]
        last = np.ones(ordered.size, dtype=bool)  # is this sorted row the end of its run?
        last[:-1] = ordered[1:] != ordered[:-1]
        self.ends = np.flatnonzero(last)
        self.thresholds = ordered[self.ends]
        self.sorted_positive = positive[self.order].astype(np.float64)
        self.rank = np.empty(scores.size, dtype=np.int64)  # position in the sorted order
        self.rank[self.order] = np.arange(scores.size)
        run = (np.cumsum(last) - last)[self.rank]
        # Code 2 * run + is_positive: a histogram of it gives both counts per run.
        self.codes = 2 * run + positive.astype(np.int64)

    def runs(self, sample: Sample) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """Positive and negative counts per run of tied scores, and their running totals.

        All four are ``(B, runs)``, runs in descending score order.
        """
        n_runs = self.ends.size
        if 4 * n_runs <= sample.rows:  # few distinct scores (e.g. calibrated): histogram
            per_run = sample.histogram(self.codes, 2 * n_runs).reshape(-1, n_runs, 2)
            pos, neg = per_run[:, :, 1], per_run[:, :, 0]
            return pos, neg, np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
        ordered = sample.histogram(self.rank, sample.rows)  # row counts in score order
        pos = ordered * self.sorted_positive
        tp, seen = np.cumsum(pos, axis=1), np.cumsum(ordered, axis=1)
        if n_runs == sample.rows:  # no ties: every row is a run of its own
            return pos, ordered - pos, tp, seen - tp
        tp, fp = tp[:, self.ends], seen[:, self.ends] - tp[:, self.ends]
        return np.diff(tp, axis=1, prepend=0.0), np.diff(fp, axis=1, prepend=0.0), tp, fp

    def auc(self, sample: Sample) -> FloatArray:
        pos, neg, tp, fp = self.runs(sample)
        n_pos, n_neg = tp[:, -1], fp[:, -1]
        # A positive beats every negative in a lower run and half of those it ties with.
        losses = _rowdot(pos, fp) - 0.5 * _rowdot(pos, neg)
        return _ratio(n_pos * n_neg - losses, n_pos * n_neg)

    def curve(self, sample: Sample) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """Per-run positive count, precision and recall at each threshold, and positives."""
        pos, _, tp, fp = self.runs(sample)
        n_pos = tp[:, -1:]
        # Counts are whole numbers, so max(., 1) only replaces 0 / 0 (which must read 0).
        precision = tp / np.maximum(tp + fp, 1.0)
        return pos, precision, tp / np.maximum(n_pos, 1.0), n_pos[:, 0]


def _rowdot(a: FloatArray, b: FloatArray) -> FloatArray:
    return np.asarray(np.einsum("ij,ij->i", a, b), dtype=np.float64)


class BinaryKernel:
    """``y`` in {0, 1}; ``scores`` the positive-class probability."""

    names: tuple[str, ...] = (
        "roc_auc",
        "pr_auc",
        "log_loss",
        "brier",
        "recall_at_precision",
        "precision",
        "recall",
        "f1",
        "positive_rate",
        "base_rate",
    )

    def __init__(
        self, y: Any, scores: Any, *, threshold: float = 0.5, precision_target: float = 0.8
    ) -> None:
        self.y = np.asarray(y).astype(bool)
        self.scores = np.asarray(scores, dtype=np.float64)
        self.precision_target = precision_target
        # Confusion code: 2 * actual + predicted.
        self.confusion = 2 * self.y.astype(np.int64) + (self.scores >= threshold)

    @cached_property
    def ranking(self) -> _Ranking:
        return _Ranking(self.y, self.scores)

    def batch(self, name: str, sample: Sample) -> FloatArray:
        if name == "roc_auc":
            return self.ranking.auc(sample)
        if name in ("pr_auc", "recall_at_precision"):
            pos, precision, recall, n_pos = self.ranking.curve(sample)
            if name == "pr_auc":
                return _ratio(_rowdot(pos, precision), n_pos)
            reached = np.where(precision >= self.precision_target, recall, 0.0)
            return np.where(n_pos > 0, reached.max(axis=1, initial=0.0), np.nan)
        if name == "brier":
            return sample.mean((self.scores - self.y) ** 2)
        if name == "log_loss":
            p = np.clip(self.scores, _EPS, 1 - _EPS)
            return sample.mean(-np.where(self.y, np.log(p), np.log1p(-p)))
        counts = sample.histogram(self.confusion, 4)
        _, fp, fn, tp = counts.T  # columns: tn, fp, fn, tp
        if name == "precision":
            return _ratio(tp, tp + fp)
        if name == "recall":
            return _ratio(tp, tp + fn)
        if name == "f1":
            return _ratio(2 * tp, 2 * tp + fp + fn)
        if name == "positive_rate":
            return _ratio(tp + fp, counts.sum(axis=1))
        if name == "base_rate":
            return _ratio(tp + fn, counts.sum(axis=1))
        raise KeyError(name)


class MulticlassKernel:
    """``y`` integer class codes; ``scores`` an ``(n, k)`` probability matrix."""

    names: tuple[str, ...] = ("log_loss", "roc_auc", "accuracy", "macro_f1")

    def __init__(self, y: Any, scores: Any) -> None:
        self.y = np.asarray(y).astype(np.int64)
        self.scores = np.asarray(scores, dtype=np.float64)
        self.k = int(self.scores.shape[1])
        predicted = self.scores.argmax(axis=1) if self.y.size else self.y
        self.confusion = self.y * self.k + predicted  # code: k * actual + predicted

    @cached_property
    def rankings(self) -> list[_Ranking]:
        return [_Ranking(self.y == c, self.scores[:, c]) for c in range(self.k)]

    def batch(self, name: str, sample: Sample) -> FloatArray:
        if name == "log_loss":
            picked = self.scores[np.arange(self.y.size), self.y]
            return sample.mean(-np.log(np.clip(picked, _EPS, 1 - _EPS)))
        if name == "roc_auc":
            per_class = np.stack([r.auc(sample) for r in self.rankings], axis=1)
            # Classes absent from a (re)sample have no AUC; average the others.
            defined = (~np.isnan(per_class)).sum(axis=1)
            mean = _ratio(np.nansum(per_class, axis=1), defined.astype(np.float64))
            return np.where(defined >= 2, mean, np.nan)
        matrix = sample.histogram(self.confusion, self.k * self.k).reshape(-1, self.k, self.k)
        tp = np.diagonal(matrix, axis1=1, axis2=2)
        if name == "accuracy":
            return _ratio(tp.sum(axis=1), matrix.sum(axis=(1, 2)))
        if name == "macro_f1":
            # NaN for a class neither present nor predicted: it is left out, as sklearn does.
            f1 = _ratio(2 * tp, matrix.sum(axis=1) + matrix.sum(axis=2))
            defined = (~np.isnan(f1)).sum(axis=1)
            return _ratio(np.nansum(f1, axis=1), defined.astype(np.float64))
        raise KeyError(name)


class RegressionKernel:
    names: tuple[str, ...] = ("mae", "rmse")

    def __init__(self, y: Any, scores: Any) -> None:
        self.error = np.asarray(scores, dtype=np.float64) - np.asarray(y, dtype=np.float64)

    def batch(self, name: str, sample: Sample) -> FloatArray:
        if name == "mae":
            return sample.mean(np.abs(self.error))
        if name == "rmse":
            return np.sqrt(sample.mean(self.error**2))
        raise KeyError(name)
