"""Confidence-based performance estimation (CBPE) of a calibrated binary classifier.

Without labels, a calibrated score ``p`` is the probability that its row is
positive, so every cell of the confusion matrix has an expected value: a row
predicted positive adds ``p`` to the true positives and ``1 - p`` to the false
positives, a row predicted negative adds ``p`` to the false negatives and
``1 - p`` to the true negatives. Precision, recall, F1 and accuracy follow from
the expected counts. The ranking metrics sweep the threshold over the distinct
scores, as NannyML's CBPE does: the expected TPR and FPR at each give the ROC
curve and its trapezoid area; the expected precision at each, weighted by the
expected positives it adds, gives the average precision (PR-AUC).

The band is the spread of the *realized* metric of this very window around the
estimate when the scores are calibrated: ``n_draws`` label vectors are drawn
with ``y ~ Bernoulli(p)``, each is scored with the project's metric kernels, and
the band is ``estimate +/- z * std`` over the draws. It is what the realized
value should fall in once labels arrive; it does not cover miscalibration or
concept shift, which is why the reference calibration travels with the result.

>>> rng = np.random.default_rng(0)
>>> p = rng.beta(2, 5, 5000)
>>> est = estimate_performance(p, threshold=0.5, n_draws=100, seed=1)
>>> for name, m in est.metrics.items():
...     print(f"{name:9} {m.value:.4f} [{m.low:.4f}, {m.high:.4f}]")
roc_auc   0.7163 [0.6993, 0.7333]
pr_auc    0.4997 [0.4730, 0.5265]
f1        0.3244 [0.3050, 0.3437]
precision 0.5923 [0.5549, 0.6296]
recall    0.2234 [0.2095, 0.2372]
accuracy  0.7316 [0.7199, 0.7433]
>>> est.warnings[0].startswith("calibration not checked")
True
>>> y = rng.random(5000) < p
>>> check = calibration_check(p, y)
>>> print(f"{check.ece:.4f} {check.noise:.4f} {check.calibrated}")
0.0110 0.0205 True
>>> calibration_check(p**2, y).reason
'ECE 0.1782 is above max_ece 0.03'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt

from setpoint._json import jsonable
from setpoint.errors import InvalidParameterError
from setpoint.stats.performance import PerformanceResult
from setpoint.train._kernels import BinaryKernel, Sample

__all__ = [
    "CBPE_METRICS",
    "CalibrationCheck",
    "ConfusionEstimate",
    "Estimate",
    "EstimationError",
    "MetricError",
    "MetricEstimate",
    "calibration_check",
    "estimate_performance",
    "estimation_error",
]

FloatArray = npt.NDArray[np.float64]
CBPE_METRICS: tuple[str, ...] = ("roc_auc", "pr_auc", "f1", "precision", "recall", "accuracy")
# Same budget as the paired bootstrap: (draws x rows) cells held at once.
_CHUNK_CELLS = 250_000


@dataclass(frozen=True)
class CalibrationCheck:
    """Expected calibration error of reference scores against their labels.

    ``ece`` is over equal-count bins; ``noise`` is the 95th percentile of the ECE
    that perfectly calibrated scores would show on the same rows (labels drawn
    from the scores), the floor below which ``max_ece`` cannot be verified.
    """

    ece: float
    noise: float
    max_ece: float
    calibrated: bool
    n: int
    reason: str | None
    bins: tuple[tuple[float, float, int], ...] = ()  # (mean score, positive rate, rows)

    def to_dict(self) -> dict[str, Any]:
        return dict(jsonable(asdict(self)))


@dataclass(frozen=True)
class MetricEstimate:
    """One estimated metric; ``value`` is None (and ``reason`` says why) when undefined."""

    value: float | None
    std: float | None
    low: float | None
    high: float | None
    reason: str | None = None


@dataclass(frozen=True)
class ConfusionEstimate:
    """Expected counts of the confusion matrix at the threshold."""

    tp: float
    fp: float
    fn: float
    tn: float


@dataclass(frozen=True)
class Estimate:
    """The estimated metrics of one window, with what they rest on and any warnings."""

    metrics: dict[str, MetricEstimate]
    confusion: ConfusionEstimate
    n: int
    expected_positive_rate: float
    threshold: float
    confidence: float
    n_draws: int
    calibration: CalibrationCheck | None
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return dict(jsonable(asdict(self)))


@dataclass(frozen=True)
class MetricError:
    """``error`` is estimated minus realized; ``within_band`` whether realized is in the band."""

    estimated: float | None
    realized: float | None
    error: float | None
    within_band: bool | None


@dataclass(frozen=True)
class EstimationError:
    """Per metric, the estimate against the realized value."""

    metrics: dict[str, MetricError]

    def to_dict(self) -> dict[str, Any]:
        return dict(jsonable(asdict(self)))


def _fail(owner: str, parameter: str, expected: str, got: Any) -> InvalidParameterError:
    return InvalidParameterError(owner=owner, parameter=parameter, expected=expected, got=got)


def _probabilities(scores: Any, owner: str) -> FloatArray:
    try:
        p = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError):
        raise _fail(owner, "scores", "positive-class probabilities", scores) from None
    if p.ndim != 1 or p.size == 0 or not np.all((p >= 0) & (p <= 1)):
        got = f"shape {p.shape}" if p.ndim != 1 or p.size == 0 else "values outside [0, 1] or NaN"
        raise _fail(owner, "scores", "a non-empty 1-D array of probabilities in [0, 1]", got)
    return p


def _check_draws(owner: str, n_draws: int, seed: int) -> None:
    if isinstance(n_draws, bool) or not isinstance(n_draws, int) or n_draws < 2:
        raise _fail(owner, "n_draws", "an integer >= 2", n_draws)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise _fail(owner, "seed", "an integer", seed)


def calibration_check(
    scores: Any,
    labels: Any,
    *,
    bins: int = 10,
    max_ece: float = 0.03,
    n_draws: int = 200,
    seed: int = 0,
) -> CalibrationCheck:
    """Whether ``scores`` are calibrated enough on labelled (reference) rows for CBPE."""
    owner = "calibration_check"
    p = _probabilities(scores, owner)
    y = np.asarray(labels)
    if y.shape != p.shape or not np.isin(y.astype(np.float64), (0.0, 1.0)).all():
        raise _fail(owner, "labels", f"{p.size} labels in {{0, 1}}", f"shape {y.shape}")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise _fail(owner, "bins", "an integer >= 1", bins)
    if not 0 < max_ece < 1:
        raise _fail(owner, "max_ece", "in (0, 1)", max_ece)
    _check_draws(owner, n_draws, seed)
    # Equal-count bins: calibrated scores are skewed, and equal-width bins would
    # leave the high ones judged on a handful of rows.
    edges = np.quantile(p, np.linspace(0, 1, bins + 1)[1:-1])
    codes = np.searchsorted(edges, p, side="right")

    def per_bin(weights: Any = None) -> FloatArray:
        return np.asarray(np.bincount(codes, weights=weights, minlength=bins), dtype=np.float64)

    rows, mass = per_bin(), per_bin(p)
    used = rows > 0

    def ece_of(hits: FloatArray) -> float:
        gap = np.abs(mass[used] - hits[used]) / rows[used]
        return float((rows[used] * gap).sum() / p.size)

    positives = per_bin(y.astype(np.float64))
    ece = ece_of(positives)
    rng = np.random.default_rng(seed)
    null = [ece_of(per_bin(rng.random(p.size) < p)) for _ in range(n_draws)]
    noise = float(np.quantile(null, 0.95))
    reason = None
    if noise > max_ece and ece <= noise:
        reason = (
            f"too few rows ({p.size}) to verify max_ece {max_ece}: ECE {ece:.4f} is within "
            f"the {noise:.4f} that calibrated scores would show on them"
        )
    elif ece > max_ece:
        reason = f"ECE {ece:.4f} is above max_ece {max_ece}"
    table = tuple(
        (float(mass[b] / rows[b]), float(positives[b] / rows[b]), int(rows[b]))
        for b in np.flatnonzero(used)
    )
    return CalibrationCheck(ece, noise, max_ece, reason is None, int(p.size), reason, table)


def _expected(p: FloatArray, threshold: float) -> dict[str, float | None]:
    """The CBPE point estimates, ``None`` where a metric is undefined."""
    order = np.argsort(-p, kind="stable")
    ordered = p[order]
    last = np.ones(p.size, dtype=bool)
    last[:-1] = ordered[1:] != ordered[:-1]
    ends = np.flatnonzero(last)
    tp_cum = np.cumsum(ordered)[ends]  # expected positives at or above each distinct score
    fp_cum = (ends + 1) - tp_cum
    pos = np.diff(tp_cum, prepend=0.0)
    neg = np.diff(fp_cum, prepend=0.0)
    total_pos, total_neg = float(tp_cum[-1]), float(fp_cum[-1])
    out: dict[str, float | None] = {"roc_auc": None, "pr_auc": None}
    if total_pos > 0 and total_neg > 0:
        # The trapezoid under (FPR, TPR): a positive loses to the negatives at or
        # above its score, and to half of those it ties with.
        losses = float(pos @ fp_cum - 0.5 * pos @ neg)
        out["roc_auc"] = 1.0 - losses / (total_pos * total_neg)
    if total_pos > 0:
        out["pr_auc"] = float(pos @ (tp_cum / (ends + 1)) / total_pos)
    predicted = p >= threshold
    tp, fp = float(p[predicted].sum()), float((1 - p[predicted]).sum())
    fn, tn = float(p[~predicted].sum()), float((1 - p[~predicted]).sum())
    out |= {"tp": tp, "fp": fp, "fn": fn, "tn": tn, "accuracy": (tp + tn) / p.size}
    out["precision"] = tp / (tp + fp) if tp + fp > 0 else None
    out["recall"] = tp / (tp + fn) if tp + fn > 0 else None
    out["f1"] = 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn > 0 else None
    return out


def _draws(
    p: FloatArray, threshold: float, names: Sequence[str], n_draws: int, seed: int
) -> dict[str, FloatArray]:
    """Each metric on ``n_draws`` label vectors drawn from the scores."""
    # Every row appears twice, once labelled positive and once negative; a draw
    # picks one copy per row, so the project's kernels score it unchanged.
    rows = p.size
    kernel = BinaryKernel(np.r_[np.ones(rows), np.zeros(rows)], np.r_[p, p], threshold=threshold)
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _CHUNK_CELLS // rows)
    values: dict[str, list[FloatArray]] = {name: [] for name in names}
    for start in range(0, n_draws, per_chunk):
        negative = rng.random((min(per_chunk, n_draws - start), rows)) >= p
        sample = Sample(np.arange(rows, dtype=np.int64) + rows * negative, 2 * rows)
        for name in names:
            if name == "accuracy":
                tn, _, _, tp = sample.histogram(kernel.confusion, 4).T
                values[name].append((tn + tp) / rows)
            else:
                values[name].append(kernel.batch(name, sample))
    return {name: np.concatenate(chunks) for name, chunks in values.items()}


_UNDEFINED = {
    "roc_auc": "every score is 0 or every score is 1: one class expected",
    "pr_auc": "every score is 0: no expected positives",
    "precision": "no score reaches the threshold: no predicted positives",
    "recall": "every score is 0: no expected positives",
    "f1": "no expected positives and no predicted positives",
}


def estimate_performance(
    scores: Any,
    *,
    threshold: float,
    metrics: Sequence[str] = CBPE_METRICS,
    calibration: CalibrationCheck | None = None,
    confidence: float = 0.95,
    n_draws: int = 200,
    seed: int = 0,
) -> Estimate:
    """Estimate ``metrics`` of a window from its calibrated scores alone.

    ``threshold`` is the model's decision threshold (a score at or above it is a
    positive prediction). ``calibration`` is :func:`calibration_check` on the
    reference rows; the result warns when it is missing or failed.
    """
    owner = "estimate_performance"
    p = _probabilities(scores, owner)
    number = isinstance(threshold, int | float) and not isinstance(threshold, bool)
    if not number or not 0 <= threshold <= 1:
        raise _fail(owner, "threshold", "a number in [0, 1]", threshold)
    names = list(dict.fromkeys(metrics))
    if not names or not set(names) <= set(CBPE_METRICS):
        raise _fail(owner, "metrics", f"a non-empty subset of {list(CBPE_METRICS)}", metrics)
    if not 0 < confidence < 1:
        raise _fail(owner, "confidence", "in (0, 1)", confidence)
    _check_draws(owner, n_draws, seed)
    expected = _expected(p, float(threshold))
    draws = _draws(p, float(threshold), names, n_draws, seed)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    results: dict[str, MetricEstimate] = {}
    for name in names:
        value = expected[name]
        defined = draws[name][~np.isnan(draws[name])]
        if value is None:
            results[name] = MetricEstimate(None, None, None, None, _UNDEFINED[name])
            continue
        std = float(defined.std(ddof=1)) if defined.size >= 2 else None
        low = None if std is None else max(0.0, value - z * std)
        high = None if std is None else min(1.0, value + z * std)
        results[name] = MetricEstimate(value, std, low, high)
    warnings: list[str] = []
    if calibration is None:
        warnings.append(
            "calibration not checked: CBPE is only valid for calibrated scores; pass "
            "calibration=calibration_check(reference_scores, reference_labels)"
        )
    elif not calibration.calibrated:
        warnings.append(f"reference scores are not calibrated enough: {calibration.reason}")
    confusion = ConfusionEstimate(*(float(expected[k] or 0.0) for k in ("tp", "fp", "fn", "tn")))
    return Estimate(
        metrics=results,
        confusion=confusion,
        n=int(p.size),
        expected_positive_rate=float(p.mean()),
        threshold=float(threshold),
        confidence=confidence,
        n_draws=n_draws,
        calibration=calibration,
        warnings=tuple(warnings),
    )


def estimation_error(
    estimate: Estimate, realized: PerformanceResult | Mapping[str, float | None]
) -> EstimationError:
    """How far each estimated metric was from the realized one, once labels arrived."""
    if isinstance(realized, PerformanceResult):
        actual = {name: m.value for name, m in realized.metrics.items()}
    else:
        actual = dict(realized)
    errors: dict[str, MetricError] = {}
    for name, guess in estimate.metrics.items():
        truth = actual.get(name)
        truth = None if truth is None or np.isnan(truth) else float(truth)
        if guess.value is None or truth is None or guess.low is None or guess.high is None:
            errors[name] = MetricError(guess.value, truth, None, None)
        else:
            inside = guess.low <= truth <= guess.high
            errors[name] = MetricError(guess.value, truth, guess.value - truth, inside)
    return EstimationError(errors)
