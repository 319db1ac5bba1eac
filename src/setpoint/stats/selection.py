"""Which test decides a feature's drift, with which threshold: Evidently 0.7's rule by default.

The options of ``detect_drift`` that concern tests are checked here too, and
an error names ``detect_drift`` as the owner.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal, TypeAlias

import numpy as np

from setpoint.errors import InvalidParameterError
from setpoint.stats.summaries import ColumnSummary

__all__ = [
    "DEFAULT_THRESHOLDS",
    "METHODS",
    "P_VALUE_TESTS",
    "Kind",
    "Method",
    "Test",
    "decide",
    "default_test",
    "is_number",
    "resolve_methods",
    "resolve_thresholds",
]

Kind: TypeAlias = Literal["numeric", "categorical"]
Test: TypeAlias = Literal["ks", "wasserstein", "psi", "jensen_shannon", "chi_square", "z"]
Method: TypeAlias = Literal["auto", "ks", "wasserstein", "psi", "jensen_shannon", "chi_square"]

DEFAULT_THRESHOLDS: Mapping[str, float] = MappingProxyType(
    {
        "ks": 0.05,
        "chi_square": 0.05,
        "z": 0.05,
        "wasserstein": 0.1,
        "jensen_shannon": 0.1,
        "psi": 0.1,
    }
)
P_VALUE_TESTS = frozenset({"ks", "chi_square", "z"})
METHODS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "numeric": frozenset({"auto", "ks", "wasserstein", "psi", "jensen_shannon", "chi_square"}),
        "categorical": frozenset({"auto", "psi", "jensen_shannon", "chi_square"}),
    }
)
# Evidently's cut between a small reference (tests) and a large one (distances).
_SMALL_REFERENCE = 1000
_FEW_VALUES = 5


def default_test(kind: Kind, *, n_reference: int, n_unique: int) -> Test:
    """The test Evidently 0.7 picks for a column (its ``_get_default_stattest``).

    ``n_reference`` counts the reference's non-missing values, ``n_unique`` the
    distinct values of reference and current together.

    >>> default_test("numeric", n_reference=200_000, n_unique=5_000)
    'wasserstein'
    >>> default_test("numeric", n_reference=200_000, n_unique=4)
    'jensen_shannon'
    >>> default_test("numeric", n_reference=800, n_unique=300)
    'ks'
    >>> default_test("categorical", n_reference=800, n_unique=2)
    'z'
    """
    if n_reference <= _SMALL_REFERENCE:
        if kind == "numeric" and n_unique > _FEW_VALUES:
            return "ks"
        return "chi_square" if n_unique > 2 else "z"
    if kind == "numeric" and n_unique > _FEW_VALUES:
        return "wasserstein"
    return "jensen_shannon"


def is_number(value: Any) -> bool:
    """A real number, numpy's included (LightGBM's importances are numpy integers)."""
    if isinstance(value, bool | np.bool_):
        return False
    return isinstance(value, numbers.Real) and not math.isnan(value)


def _fail(parameter: str, expected: str, got: Any) -> InvalidParameterError:
    return InvalidParameterError(
        owner="detect_drift", parameter=parameter, expected=expected, got=got
    )


def resolve_thresholds(thresholds: Mapping[str, float] | None) -> dict[str, float]:
    """``DEFAULT_THRESHOLDS`` with ``thresholds`` (by test name) in place of the defaults."""
    resolved = dict(DEFAULT_THRESHOLDS)
    for test, value in (thresholds or {}).items():
        if test not in DEFAULT_THRESHOLDS:
            raise _fail("thresholds", f"keys among {sorted(DEFAULT_THRESHOLDS)}", test)
        if not is_number(value) or not math.isfinite(value) or value <= 0:
            raise _fail("thresholds", f"a positive number for {test!r}", value)
        if test in P_VALUE_TESTS and value >= 1:
            raise _fail("thresholds", f"a p-value level in (0, 1) for {test!r}", value)
        resolved[test] = float(value)
    return resolved


def resolve_methods(
    columns: Mapping[str, ColumnSummary],
    numeric_method: str,
    categorical_method: str,
    methods: Mapping[str, str] | None,
) -> dict[str, str]:
    """The method of every column: its kind's, unless ``methods`` names one for it."""
    for parameter, kind, value in (
        ("numeric_method", "numeric", numeric_method),
        ("categorical_method", "categorical", categorical_method),
    ):
        if value not in METHODS[kind]:
            raise _fail(parameter, f"one of {sorted(METHODS[kind])}", value)
    chosen = {
        name: numeric_method if summary.kind == "numeric" else categorical_method
        for name, summary in columns.items()
    }
    for name, method in (methods or {}).items():
        if name not in columns:
            raise _fail("methods", f"keys among the reference's columns {sorted(chosen)}", name)
        kind = columns[name].kind
        if method not in METHODS[kind]:
            raise _fail(
                "methods", f"for {kind} column {name!r}, one of {sorted(METHODS[kind])}", method
            )
        chosen[name] = method
    return chosen


def decide(test: str, statistic: float, p_value: float | None, threshold: float) -> bool:
    """Whether ``test`` says drift; a test that could not run (NaN) says no.

    >>> decide("ks", 0.2, 0.05, 0.05), decide("z", 2.0, 0.05, 0.05)
    (True, False)
    >>> decide("wasserstein", 0.1, None, 0.1), decide("jensen_shannon", float("nan"), None, 0.1)
    (True, False)
    """
    if p_value is not None:
        if math.isnan(p_value):
            return False
        # Evidently's comparisons: K-S drifts at p <= threshold, chi-square and z below it.
        return p_value <= threshold if test == "ks" else p_value < threshold
    return not math.isnan(statistic) and statistic >= threshold
