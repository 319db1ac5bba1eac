"""Distances and tests between a reference and a current distribution, one function each.

Binned measures take two count vectors over the same bins (or categories), so
that the current window is binned once and every measure reuses the counts.
Sample measures take two 1-D samples.

>>> rng = np.random.default_rng(0)
>>> ref = np.bincount(rng.integers(0, 4, 1000), minlength=4)
>>> cur = np.bincount(rng.integers(0, 4, 1000) // 2 * 2, minlength=4)
>>> ref.tolist(), cur.tolist()
([228, 235, 274, 263], [494, 0, 506, 0])
>>> print(f"{psi(ref, cur):.4f} {jensen_shannon(ref, cur):.4f}")
4.2416 0.4639
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from setpoint.errors import InvalidParameterError

__all__ = [
    "Significance",
    "benjamini_hochberg",
    "chi_square",
    "jensen_shannon",
    "ks",
    "ks_and_wasserstein",
    "psi",
    "two_proportion_z",
    "wasserstein_normed",
]

FloatArray = npt.NDArray[np.float64]
# Evidently's floor for a normalising standard deviation: a constant reference
# column would otherwise divide by zero.
_MIN_SCALE = 0.001
# Evidently's small reference, whose numbers it tests with K-S (``selection.default_test``).
_EXACT_REFERENCE = 1000


class Significance(NamedTuple):
    """A test's statistic and its p-value (NaN when the test cannot run)."""

    statistic: float
    p_value: float


def _counts(reference: Any, current: Any, owner: str) -> tuple[FloatArray, FloatArray]:
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if ref.ndim != 1 or ref.shape != cur.shape or (ref < 0).any() or (cur < 0).any():
        raise InvalidParameterError(
            owner=owner,
            parameter="current",
            expected="non-negative counts over the same bins as the reference",
            got=f"shapes {ref.shape} and {cur.shape}",
        )
    return ref, cur


def _fill_zeros(share: FloatArray) -> FloatArray:
    # Evidently's rule, so that PSI values compare: an empty bin gets 1e-4, or a
    # millionth of the smallest non-empty share when that is smaller still.
    positive = share[share > 0]
    if positive.size == 0:
        return share
    smallest = float(positive.min())
    floor = smallest / 1e6 if smallest <= 1e-4 else 1e-4
    return np.where(share > 0, share, floor)


def psi(reference: Any, current: Any) -> float:
    """Population stability index: ``sum((r - c) * ln(r / c))`` over bin shares.

    Empty bins are filled as Evidently does; NaN when a side has no values.
    Rules of thumb: below 0.1 stable, 0.1 to 0.25 moderate, above 0.25 large.

    >>> print(f"{psi([50, 30, 20], [40, 30, 30]):.4f}")
    0.0629
    >>> psi([10, 0], [10, 0])
    0.0
    """
    ref, cur = _counts(reference, current, "psi")
    if ref.sum() == 0 or cur.sum() == 0:
        return float("nan")
    r = _fill_zeros(ref / ref.sum())
    c = _fill_zeros(cur / cur.sum())
    return float(np.sum((r - c) * np.log(r / c)))


def jensen_shannon(reference: Any, current: Any) -> float:
    """Jensen-Shannon distance (natural log, so in [0, sqrt(ln 2)]), as scipy and Evidently.

    >>> print(f"{jensen_shannon([50, 30, 20], [40, 30, 30]):.4f}")
    0.0884
    >>> print(f"{jensen_shannon([1, 0], [0, 1]):.4f}")
    0.8326
    """
    ref, cur = _counts(reference, current, "jensen_shannon")
    if ref.sum() == 0 or cur.sum() == 0:
        return float("nan")
    p, q = ref / ref.sum(), cur / cur.sum()
    m = (p + q) / 2
    # 0 * log(0 / m) is 0; m > 0 wherever p or q is.
    kl_p = np.sum(p[p > 0] * np.log(p[p > 0] / m[p > 0]))
    kl_q = np.sum(q[q > 0] * np.log(q[q > 0] / m[q > 0]))
    return float(np.sqrt(max((kl_p + kl_q) / 2, 0.0)))


def chi_square(reference: Any, current: Any) -> Significance:
    """Pearson's chi-square test of homogeneity on the 2 x k table of counts.

    Both samples are random, so both enter the expected counts. (Evidently's
    goodness-of-fit version treats the reference shares as exact, which
    overstates significance when the reference is not much larger than the
    current window.) Bins empty on both sides are dropped; with one bin left
    there is nothing to test and p is 1.

    >>> r = chi_square([50, 30, 20], [40, 30, 30])
    >>> print(f"{r.statistic:.4f} {r.p_value:.4f}")
    3.1111 0.2111
    """
    ref, cur = _counts(reference, current, "chi_square")
    keep = (ref + cur) > 0
    ref, cur = ref[keep], cur[keep]
    n_ref, n_cur = ref.sum(), cur.sum()
    if n_ref == 0 or n_cur == 0:
        return Significance(float("nan"), float("nan"))
    if ref.size < 2:
        return Significance(0.0, 1.0)
    from scipy.stats import chi2

    total = ref + cur
    expected_ref = total * (n_ref / (n_ref + n_cur))
    expected_cur = total * (n_cur / (n_ref + n_cur))
    statistic = float(
        np.sum((ref - expected_ref) ** 2 / expected_ref)
        + np.sum((cur - expected_cur) ** 2 / expected_cur)
    )
    return Significance(statistic, float(chi2.sf(statistic, ref.size - 1)))


def two_proportion_z(reference: Any, current: Any) -> Significance:
    """The pooled two-proportion z-test (two-sided) of a variable with two values.

    Evidently's default for a binary column of a small reference. Its p-value
    equals that of ``chi_square`` on the same 2 x 2 table; ``statistic`` is |z|.

    >>> r = two_proportion_z([60, 40], [45, 55])
    >>> print(f"{r.statistic:.4f} {r.p_value:.4f}")
    2.1240 0.0337
    >>> print(f"{chi_square([60, 40], [45, 55]).p_value:.4f}")
    0.0337
    """
    ref, cur = _counts(reference, current, "two_proportion_z")
    keep = (ref + cur) > 0
    ref, cur = ref[keep], cur[keep]
    if ref.size > 2:
        raise InvalidParameterError(
            owner="two_proportion_z",
            parameter="reference",
            expected="counts of at most two values",
            got=f"{ref.size} values",
        )
    n_ref, n_cur = ref.sum(), cur.sum()
    if n_ref == 0 or n_cur == 0:
        return Significance(float("nan"), float("nan"))
    if ref.size < 2:
        return Significance(0.0, 1.0)  # one value on both sides: Evidently's p of 1
    from scipy.stats import norm

    p_ref, p_cur = ref[0] / n_ref, cur[0] / n_cur
    pooled = (ref[0] + cur[0]) / (n_ref + n_cur)
    z = abs(p_ref - p_cur) / np.sqrt(pooled * (1 - pooled) * (1 / n_ref + 1 / n_cur))
    return Significance(float(z), float(2 * norm.sf(z)))


def ks_and_wasserstein(
    reference: Any, current: Any, *, scale: float = 1.0, n_reference: int | None = None
) -> tuple[Significance, float]:
    """The Kolmogorov-Smirnov test and the normed Wasserstein distance, from one merge.

    Both read the gap between the two ECDFs at every pooled value: its maximum is
    the K-S statistic, its integral the first Wasserstein distance (divided by
    ``scale``, Evidently's normalisation; a scale below 0.001 counts as 0.001).
    See ``ks`` for ``n_reference``.
    """
    ref = np.sort(np.asarray(reference, dtype=np.float64))
    cur = np.sort(np.asarray(current, dtype=np.float64))
    if ref.size == 0 or cur.size == 0:
        return Significance(float("nan"), float("nan")), float("nan")
    from scipy.stats import ks_2samp, kstwobign

    pooled = np.sort(np.concatenate([ref, cur]), kind="stable")  # merges the two sorted runs
    gap = np.abs(
        np.searchsorted(ref, pooled, side="right") / ref.size
        - np.searchsorted(cur, pooled, side="right") / cur.size
    )
    statistic = float(gap.max())
    distance = float(np.dot(gap[:-1], np.diff(pooled))) / max(scale, _MIN_SCALE)
    n_ref = ref.size if n_reference is None else max(n_reference, ref.size)
    if n_ref <= _EXACT_REFERENCE:
        # A small reference, where the K-S test is what decides: scipy's p-value, exact
        # for small samples as Evidently's.
        return Significance(statistic, float(ks_2samp(ref, cur).pvalue)), distance
    # A large reference, where a distance decides and the p-value only ranks features for
    # the false-discovery list: the asymptotic distribution with Stephens' small-sample
    # factor, within 0.5% of scipy's kstwo (what ks_2samp uses) from 4,500 effective
    # values up, where kstwo itself takes up to 63 ms per call. A stratified sample that
    # stands for more values is within ``1 / len(reference)`` of their ECDF: the
    # statistic less that margin can only make the test more cautious.
    root = np.sqrt(n_ref * cur.size / (n_ref + cur.size))
    margin = statistic if n_ref == ref.size else max(statistic - 1 / ref.size, 0.0)
    p_value = float(kstwobign.sf((root + 0.12 + 0.11 / root) * margin))
    return Significance(statistic, p_value), distance


def ks(reference: Any, current: Any, *, n_reference: int | None = None) -> Significance:
    """Two-sample Kolmogorov-Smirnov test, two-sided.

    Against a reference of at most 1,000 values the p-value is scipy's
    ``ks_2samp`` (exact for small samples); against a larger one, where the
    test only ranks features, it is Kolmogorov's limiting distribution with
    Stephens' factor. ``n_reference`` says that ``reference`` is a stratified sample standing
    for that many values, its ECDF within ``1 / len(reference)`` of theirs (see
    ``Reference``). The statistic is then measured on the sample, and the
    p-value is the asymptotic one of the test between all ``n_reference``
    values and ``current`` (Kolmogorov's distribution with Stephens' factor),
    on the statistic less that margin, so that the sample can only make the
    test more cautious.

    >>> rng = np.random.default_rng(1)
    >>> r = ks(rng.normal(0, 1, 500), rng.normal(0.3, 1, 400))
    >>> print(f"{r.statistic:.4f} {r.p_value:.2e}")
    0.1560 3.51e-05

    A sketch of 1,000 quantiles of 100,000 values gives nearly the p-value of the
    test on all of them:

    >>> full, cur = rng.normal(0, 1, 100_000), rng.normal(0.02, 1, 20_000)
    >>> sketch = np.quantile(full, (np.arange(1000) + 0.5) / 1000)
    >>> print(f"{ks(full, cur).p_value:.2e} {ks(sketch, cur, n_reference=full.size).p_value:.2e}")
    2.13e-04 4.09e-04
    """
    return ks_and_wasserstein(reference, current, n_reference=n_reference)[0]


def wasserstein_normed(reference: Any, current: Any, *, scale: float) -> float:
    """First Wasserstein distance divided by ``scale`` (the reference's standard deviation).

    As Evidently's "Wasserstein distance (normed)": a scale below 0.001 counts as 0.001.

    >>> rng = np.random.default_rng(2)
    >>> print(f"{wasserstein_normed(rng.normal(0, 2, 5000), rng.normal(1, 2, 5000), scale=2):.4f}")
    0.5257
    """
    return ks_and_wasserstein(reference, current, scale=scale)[1]


def benjamini_hochberg(p_values: Any, *, fdr: float = 0.05) -> npt.NDArray[np.bool_]:
    """Which hypotheses the Benjamini-Hochberg step-up procedure rejects at ``fdr``.

    NaN p-values are not tests: never rejected, and not counted in m.

    >>> benjamini_hochberg([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.2, float("nan")]).tolist()
    [True, True, False, False, False, False, False, False]
    >>> benjamini_hochberg([0.01, 0.02, 0.03, 0.04], fdr=0.05).tolist()
    [True, True, True, True]
    """
    if not 0 < fdr < 1:
        raise InvalidParameterError(
            owner="benjamini_hochberg", parameter="fdr", expected="in (0, 1)", got=fdr
        )
    p = np.asarray(p_values, dtype=np.float64)
    rejected = np.zeros(p.shape, dtype=bool)
    tested = np.flatnonzero(~np.isnan(p))
    if tested.size == 0:
        return rejected
    order = tested[np.argsort(p[tested], kind="stable")]
    limits = fdr * np.arange(1, order.size + 1) / order.size
    below = np.flatnonzero(p[order] <= limits)
    if below.size:
        rejected[order[: below[-1] + 1]] = True
    return rejected
