"""One column of the current window against its reference summary: counts and statistics.

The current column is binned once (counted against the reference's edges, or a
hash count of categories) and PSI, Jensen-Shannon and chi-square all read
those counts; the Kolmogorov-Smirnov test and the Wasserstein distance read a
seeded subsample of the current rows against the reference's stratified sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from setpoint.stats import measures
from setpoint.stats._columns import Label, label_counts
from setpoint.stats.summaries import CategoricalSummary, NumericSummary

__all__ = ["ColumnStats", "compare_categorical", "compare_numeric"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
# Evidently picks a test by the distinct values of reference and current together,
# but only asks "more than 5?" and "more than 2?": past this, the exact count is moot.
_FEW = 5
_NEW_LISTED = 10


@dataclass(frozen=True)
class ColumnStats:
    """Everything measured on one column; ``drift.py`` picks the deciding test from it."""

    reference_counts: FloatArray
    current_counts: FloatArray
    n_current: int
    missing_current: int
    new_count: int
    n_unique: int  # of reference and current together (exact up to 6; a lower bound above)
    psi: float
    jensen_shannon: float
    chi_square: measures.Significance
    new_values: tuple[Label, ...] = ()
    ks: measures.Significance | None = None
    wasserstein: float | None = None
    sample_size: int | None = None
    mean: float | None = None
    std: float | None = None


def _binned(
    reference_counts: FloatArray, current_counts: FloatArray
) -> tuple[float, float, measures.Significance]:
    return (
        measures.psi(reference_counts, current_counts),
        measures.jensen_shannon(reference_counts, current_counts),
        measures.chi_square(reference_counts, current_counts),
    )


def compare_numeric(
    summary: NumericSummary, values: FloatArray, sample_rows: IntArray | None
) -> ColumnStats:
    """``values``: the current column (float64, NaN missing); ``sample_rows``: its subsample."""
    finite = np.isfinite(values)
    x = values if finite.all() else values[finite]
    edges = np.asarray(summary.edges, dtype=np.float64)
    if summary.n_valid == 0:
        # Nothing to compare with; only the missing rate says anything.
        reference_counts = np.zeros(1)
        current_counts = np.array([float(x.size)])
        new_count, n_unique = x.size, 0
    elif summary.discrete:
        known = edges[:-1]  # the reference's distinct values
        per_value = np.array([np.count_nonzero(x == v) for v in known], dtype=np.int64)
        new_count = int(x.size - per_value.sum())
        reference_counts = np.append(np.asarray(summary.counts[1:-1], dtype=np.float64), 0.0)
        current_counts = np.append(per_value.astype(np.float64), float(new_count))
        n_unique = summary.n_unique
        if new_count and n_unique <= _FEW:
            n_unique += int(np.unique(x[~np.isin(x, known)]).size)
    else:
        counts = summary.bin_counts(x)
        reference_counts = np.asarray(summary.counts, dtype=np.float64)
        current_counts = counts.astype(np.float64)
        new_count = int(counts[0] + counts[-1])  # outside the reference's range
        n_unique = summary.n_unique
    psi, js, chi = _binned(reference_counts, current_counts)

    sampled = values if sample_rows is None else values[sample_rows]
    ks, wasserstein = measures.ks_and_wasserstein(
        np.asarray(summary.sample, dtype=np.float64),
        sampled[np.isfinite(sampled)],
        scale=summary.std,
        n_reference=summary.n_valid,
    )
    return ColumnStats(
        reference_counts=reference_counts,
        current_counts=current_counts,
        n_current=values.size,
        missing_current=values.size - x.size,
        new_count=new_count,
        n_unique=n_unique,
        psi=psi,
        jensen_shannon=js,
        chi_square=chi,
        ks=ks,
        wasserstein=wasserstein,
        sample_size=int(np.isfinite(sampled).sum()),
        mean=float(x.mean()) if x.size else float("nan"),
        std=float(x.std()) if x.size else float("nan"),
    )


def compare_categorical(summary: CategoricalSummary, values: Any) -> ColumnStats:
    """Counts over the reference's categories, then ``<other>``, then categories never seen.

    When the reference kept only its ``top_k`` categories (``other`` > 0), a
    category outside them may be a rare one of the reference: it counts as
    ``<other>``, and only a reference with every category listed flags new ones.
    """
    labels, counts, missing = label_counts(values)
    position = {category: i for i, category in enumerate(summary.categories)}
    k = len(summary.categories)
    current_counts = np.zeros(k + 2)
    new: list[tuple[int, Label]] = []
    for label, count in zip(labels, counts.tolist(), strict=True):  # distinct labels, not rows
        i = position.get(label)
        if i is not None:
            current_counts[i] += count
        elif summary.other > 0:
            current_counts[k] += count
        else:
            current_counts[k + 1] += count
            new.append((count, label))
    reference_counts = np.array([*summary.counts, summary.other, 0], dtype=np.float64)
    psi, js, chi = _binned(reference_counts, current_counts)
    new.sort(key=lambda item: (-item[0], str(item[1])))
    return ColumnStats(
        reference_counts=reference_counts,
        current_counts=current_counts,
        n_current=int(counts.sum()) + missing,
        missing_current=missing,
        new_count=int(current_counts[k + 1]),
        n_unique=summary.n_unique + len(new),
        psi=psi,
        jensen_shannon=js,
        chi_square=chi,
        new_values=tuple(label for _, label in new[:_NEW_LISTED]),
    )
