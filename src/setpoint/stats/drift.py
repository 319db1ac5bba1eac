"""Drift between a ``Reference`` and a current window: per feature, and for the whole dataset.

Every feature gets every statistic (PSI, Jensen-Shannon distance, chi-square;
for numbers also Kolmogorov-Smirnov and the normed Wasserstein distance; the
missing rates; the share of values the reference never had), and one of them,
its *test*, decides whether the feature drifted. By default the test is chosen
as Evidently 0.7's ``DataDriftPreset`` chooses it (``default_test``), with its
thresholds and comparisons:

=============================  ======================  ============================
reference rows (non-missing)   numeric                 categorical
=============================  ======================  ============================
at most 1,000                  ``ks`` (p <= 0.05)      ``chi_square`` (p < 0.05)
  with 3 to 5 distinct values  ``chi_square``          ``chi_square``
  with 1 or 2 distinct values  ``z`` (p < 0.05)        ``z``
more than 1,000                ``wasserstein`` >= 0.1  ``jensen_shannon`` >= 0.1
  with 5 distinct values or    ``jensen_shannon``
  fewer                        >= 0.1
=============================  ======================  ============================

Distinct values are counted over reference and current together. The
chi-square test is the test of homogeneity where Evidently's is one of
goodness of fit (``measures.chi_square`` says why); for two values they give
Evidently's z-test p-value alike. A feature
also drifts when its missing rate moves by more than ``missing_threshold`` or
when more than ``new_threshold`` of its current values are new (a category
absent from the reference, a number outside its range, or a value a column of
few distinct values never had); Evidently checks neither.

The dataset drifts when the importance-weighted share of drifted features
reaches ``share_threshold`` (Evidently: an unweighted share, ``>= 0.5``). The
report also lists the features a Benjamini-Hochberg procedure at ``fdr``
rejects, one p-value per feature: its test's when the test has one, else the
Kolmogorov-Smirnov test's (numeric) or the chi-square test's (categorical).

The Kolmogorov-Smirnov test and the Wasserstein distance compare the
reference's stored sample with a seeded subsample of at most ``sample_size``
current rows; ``FeatureDrift.sample_size`` says how many values that was.

>>> rng = np.random.default_rng(1)
>>> def frame(n, shift):
...     return pd.DataFrame({
...         "x": rng.normal(shift, 1, n),
...         "y": rng.exponential(2, n),
...         "c": rng.choice(["a", "b", "c"], n, p=[0.3, 0.3, 0.4] if shift else [0.5, 0.3, 0.2]),
...     })
>>> ref = Reference.build(frame(5000, 0), numeric=["x", "y"], categorical=["c"])
>>> report = detect_drift(ref, frame(20000, 0.5))
>>> for f in report.features:
...     print(f"{f.name} {f.test} {f.statistic:.4f} {f.drifted} psi={f.psi:.3f} n={f.sample_size}")
x wasserstein 0.5044 True psi=0.250 n=20000
y wasserstein 0.0178 False psi=0.001 n=20000
c jensen_shannon 0.1796 True psi=0.262 n=None
>>> report.drifted, round(report.drift_share, 4), report.bh_rejected
(True, 0.6667, ('x', 'c'))
>>> detect_drift(ref, frame(20000, 0.5), importances={"x": 0, "y": 3, "c": 1}).drifted
False
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from itertools import pairwise
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from setpoint._json import jsonable
from setpoint.errors import InvalidParameterError
from setpoint.stats import measures
from setpoint.stats._columns import Frame, Label, column, numeric_values, row_count
from setpoint.stats._compare import ColumnStats, compare_categorical, compare_numeric
from setpoint.stats.reference import Reference
from setpoint.stats.selection import (
    DEFAULT_THRESHOLDS,
    P_VALUE_TESTS,
    Kind,
    Method,
    Test,
    decide,
    default_test,
    is_number,
    resolve_methods,
    resolve_thresholds,
)
from setpoint.stats.summaries import CategoricalSummary, ColumnSummary, NumericSummary

__all__ = [
    "DEFAULT_THRESHOLDS",
    "P_VALUE_TESTS",
    "DriftReport",
    "FeatureDrift",
    "default_test",
    "detect_drift",
]


@dataclass(frozen=True)
class FeatureDrift:
    """One column's drift: the deciding test, then every other statistic.

    ``statistic`` and ``p_value`` (None for a distance) are the deciding
    test's; ``threshold`` applies to the p-value of a test, to the statistic of
    a distance. ``drifted`` is ``test_drifted`` or a missing-rate or new-value
    alarm; ``reasons`` names which fired. Shares (``missing_*``, ``new_share``)
    are fractions; ``new_share`` is over the current non-missing values, and
    ``new_values`` names up to 10 new categories, most frequent first.
    ``weight`` is the feature's normalised importance (0 for the prediction
    and the label). ``psi``, ``jensen_shannon`` and ``chi_square`` read every
    row; ``ks`` and ``wasserstein`` read ``sample_size`` current values
    against ``reference_sample_size`` reference ones. Numeric-only fields
    are None for a categorical column.
    """

    name: str
    kind: Kind
    test: Test
    statistic: float
    p_value: float | None
    threshold: float
    drifted: bool
    test_drifted: bool
    reasons: tuple[str, ...]
    weight: float
    bh_rejected: bool
    n_reference: int
    n_current: int
    missing_reference: float
    missing_current: float
    new_share: float
    new_values: tuple[Label, ...]
    psi: float
    jensen_shannon: float
    chi_square: float
    chi_square_p: float
    ks: float | None = None
    ks_p: float | None = None
    wasserstein: float | None = None
    sample_size: int | None = None
    reference_sample_size: int | None = None
    mean_reference: float | None = None
    mean_current: float | None = None
    std_reference: float | None = None
    std_current: float | None = None
    bins: tuple[str, ...] = ()
    reference_shares: tuple[float, ...] = ()
    current_shares: tuple[float, ...] = ()

    @property
    def missing_change(self) -> float:
        return self.missing_current - self.missing_reference

    @property
    def score(self) -> float:
        """Evidently's "drift score": the p-value of a test, the value of a distance."""
        return self.statistic if self.p_value is None else self.p_value

    def to_dict(self) -> dict[str, Any]:
        payload: dict[str, Any] = jsonable(asdict(self))
        return payload


@dataclass(frozen=True)
class DriftReport:
    """Per-feature results and the dataset-level decision.

    ``prediction`` (the model's score) and ``label`` (the predicted class) are
    measured like features but are not part of ``drift_share``, nor of the
    Benjamini-Hochberg family.
    """

    features: tuple[FeatureDrift, ...]
    prediction: FeatureDrift | None
    label: FeatureDrift | None
    drifted: bool
    drift_share: float
    share_threshold: float
    bh_rejected: tuple[str, ...]
    fdr: float
    n_reference: int
    n_current: int
    sample_size: int
    seed: int

    @property
    def drifted_features(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features if f.drifted)

    def feature(self, name: str) -> FeatureDrift:
        for found in (*self.features, self.prediction, self.label):
            if found is not None and found.name == name:
                return found
        raise InvalidParameterError(
            owner="DriftReport.feature",
            parameter="name",
            expected=f"one of {[f.name for f in self.features]}",
            got=name,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (NaN as null)."""
        payload: dict[str, Any] = jsonable(asdict(self))
        return payload

    def to_frame(self) -> pd.DataFrame:
        """One row per feature, then the prediction and the label when present."""
        rows = [f for f in (*self.features, self.prediction, self.label) if f is not None]
        return pd.DataFrame([asdict(f) for f in rows])


def _fail(parameter: str, expected: str, got: Any) -> InvalidParameterError:
    return InvalidParameterError(
        owner="detect_drift", parameter=parameter, expected=expected, got=got
    )


def _share(value: float | None, parameter: str, *, closed: bool) -> None:
    if value is None:
        return
    if not is_number(value) or not (0 < value <= 1 if closed else 0 <= value < 1):
        raise _fail(parameter, "in (0, 1]" if closed else "in [0, 1) or None", value)


def _resolve_weights(
    reference: Reference, importances: Mapping[str, float] | None
) -> dict[str, float]:
    if importances is None:
        return dict.fromkeys(reference.features, 1.0 / len(reference.features))
    unknown = sorted(set(importances) - set(reference.features))
    if unknown:
        raise _fail("importances", f"keys among the features {list(reference.features)}", unknown)
    raw = {name: importances.get(name, 0.0) for name in reference.features}
    bad = {k: v for k, v in raw.items() if not is_number(v) or not (v >= 0 and v < math.inf)}
    if bad or sum(raw.values()) <= 0:
        raise _fail("importances", "finite non-negative numbers, not all 0", bad or raw)
    total = float(sum(raw.values()))
    return {name: float(value) / total for name, value in raw.items()}


def _feature(
    name: str,
    summary: ColumnSummary,
    stats: ColumnStats,
    method: str,
    thresholds: Mapping[str, float],
    missing_threshold: float | None,
    new_threshold: float | None,
    weight: float,
) -> FeatureDrift:
    kind: Kind = summary.kind
    test: Test
    if method == "auto":
        test = default_test(kind, n_reference=summary.n_valid, n_unique=stats.n_unique)
    else:
        test = cast(Test, method)  # one of METHODS, checked by resolve_methods
    found: dict[str, tuple[float, float | None]] = {
        "psi": (stats.psi, None),
        "jensen_shannon": (stats.jensen_shannon, None),
        "chi_square": (stats.chi_square.statistic, stats.chi_square.p_value),
    }
    if stats.ks is not None:
        found["ks"] = (stats.ks.statistic, stats.ks.p_value)
    if stats.wasserstein is not None:
        found["wasserstein"] = (stats.wasserstein, None)
    if test == "z":
        z = measures.two_proportion_z(stats.reference_counts, stats.current_counts)
        found["z"] = (z.statistic, z.p_value)
    statistic, p_value = found[test]
    threshold = thresholds[test]
    test_drifted = decide(test, statistic, p_value, threshold)

    missing_reference = summary.missing / summary.n if summary.n else 0.0
    missing_current = stats.missing_current / stats.n_current if stats.n_current else 0.0
    valid_current = stats.n_current - stats.missing_current
    new_share = stats.new_count / valid_current if valid_current else 0.0
    reasons: list[str] = [test] if test_drifted else []
    if (
        missing_threshold is not None
        and abs(missing_current - missing_reference) > missing_threshold
    ):
        reasons.append("missing")
    if new_threshold is not None and new_share > new_threshold:
        reasons.append("new_values")
    numeric = summary if isinstance(summary, NumericSummary) else None
    return FeatureDrift(
        name=name,
        kind=kind,
        test=test,
        statistic=float(statistic),
        p_value=None if p_value is None else float(p_value),
        threshold=threshold,
        drifted=bool(reasons),
        test_drifted=test_drifted,
        reasons=tuple(reasons),
        weight=weight,
        bh_rejected=False,
        n_reference=summary.n,
        n_current=stats.n_current,
        missing_reference=missing_reference,
        missing_current=missing_current,
        new_share=new_share,
        new_values=stats.new_values,
        psi=stats.psi,
        jensen_shannon=stats.jensen_shannon,
        chi_square=stats.chi_square.statistic,
        chi_square_p=stats.chi_square.p_value,
        ks=None if stats.ks is None else stats.ks.statistic,
        ks_p=None if stats.ks is None else stats.ks.p_value,
        wasserstein=stats.wasserstein,
        sample_size=stats.sample_size,
        reference_sample_size=None if numeric is None else len(numeric.sample),
        mean_reference=None if numeric is None else numeric.mean,
        mean_current=stats.mean,
        std_reference=None if numeric is None else numeric.std,
        std_current=stats.std,
        bins=_bin_labels(summary, stats.reference_counts.size),
        reference_shares=_shares(stats.reference_counts),
        current_shares=_shares(stats.current_counts),
    )


def _shares(counts: npt.NDArray[np.float64]) -> tuple[float, ...]:
    total = float(counts.sum())
    return tuple(float(c) / total if total else 0.0 for c in counts)


def _bin_labels(summary: ColumnSummary, size: int) -> tuple[str, ...]:
    if isinstance(summary, CategoricalSummary):
        return (*(str(c) for c in summary.categories), "<other>", "<new>")
    edges = [f"{e:.4g}" for e in summary.edges]
    if summary.n_valid == 0:
        return ("all",)
    if summary.discrete:
        return (*edges[:-1], "<new>")
    inner = [f"[{a}, {b})" for a, b in pairwise(edges)]
    labels = (f"< {edges[0]}", *inner, f">= {edges[-1]}")
    return labels if len(labels) == size else tuple(f"bin {i}" for i in range(size))


def _family_p(feature: FeatureDrift) -> float:
    if feature.p_value is not None:
        return feature.p_value
    if feature.ks_p is not None:
        return feature.ks_p
    return feature.chi_square_p


def detect_drift(
    reference: Reference,
    current: Frame,
    *,
    importances: Mapping[str, float] | None = None,
    share_threshold: float = 0.5,
    thresholds: Mapping[str, float] | None = None,
    numeric_method: Method = "auto",
    categorical_method: Method = "auto",
    methods: Mapping[str, Method] | None = None,
    missing_threshold: float | None = 0.05,
    new_threshold: float | None = 0.05,
    fdr: float = 0.05,
    sample_size: int = 50_000,
    seed: int = 0,
) -> DriftReport:
    """Compare ``current`` (a DataFrame or a dict of 1-D arrays) with ``reference``.

    ``importances`` weighs the features in the dataset-level share (a feature
    left out weighs 0; default: all equal). ``thresholds`` overrides
    ``DEFAULT_THRESHOLDS`` by test name. ``numeric_method`` and
    ``categorical_method`` replace the automatic choice for a kind,
    ``methods`` for single columns. ``missing_threshold`` and
    ``new_threshold`` (None: off) are absolute changes of a share.
    """
    if not isinstance(reference, Reference):
        raise _fail(
            "reference", "a Reference (Reference.build or from_dict)", type(reference).__name__
        )
    _share(share_threshold, "share_threshold", closed=True)
    _share(missing_threshold, "missing_threshold", closed=False)
    _share(new_threshold, "new_threshold", closed=False)
    if not is_number(fdr) or not 0 < fdr < 1:
        raise _fail("fdr", "in (0, 1)", fdr)
    for parameter, value, low in (("sample_size", sample_size, 10), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise _fail(parameter, f"an integer of at least {low}", value)
    resolved = resolve_thresholds(thresholds)
    chosen = resolve_methods(reference.columns, numeric_method, categorical_method, methods)
    weights = _resolve_weights(reference, importances)
    n_current = row_count(current, owner="detect_drift", parameter="current")
    if n_current == 0:
        raise _fail("current", "a window with at least one row", "0 rows")

    sample_rows = None
    if n_current > sample_size:
        rng = np.random.default_rng(seed)
        # Sorted positions read the columns in memory order.
        sample_rows = np.sort(rng.choice(n_current, size=sample_size, replace=False))

    results: dict[str, FeatureDrift] = {}
    for name, summary in reference.columns.items():
        values = column(current, name, side="current window")
        if isinstance(summary, NumericSummary):
            floats = numeric_values(values, name=name, side="current window")
            stats = compare_numeric(summary, floats, sample_rows)
        else:
            stats = compare_categorical(summary, values)
        results[name] = _feature(
            name,
            summary,
            stats,
            chosen[name],
            resolved,
            missing_threshold,
            new_threshold,
            weights.get(name, 0.0),
        )

    features = [results[name] for name in reference.features]
    rejected = measures.benjamini_hochberg([_family_p(f) for f in features], fdr=fdr)
    features = [replace(f, bh_rejected=bool(r)) for f, r in zip(features, rejected, strict=True)]
    share = float(sum(f.weight for f in features if f.drifted))
    return DriftReport(
        features=tuple(features),
        prediction=None if reference.prediction is None else results[reference.prediction],
        label=None if reference.label is None else results[reference.label],
        # A hair of tolerance: weights that sum to the threshold in exact
        # arithmetic must not miss it by a rounding error.
        drifted=share >= share_threshold - 1e-12,
        drift_share=share,
        share_threshold=float(share_threshold),
        bh_rejected=tuple(f.name for f in features if f.bh_rejected),
        fdr=float(fdr),
        n_reference=reference.n_rows,
        n_current=n_current,
        sample_size=sample_size,
        seed=seed,
    )
