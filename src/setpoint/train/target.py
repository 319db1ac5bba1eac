"""Check a target column and encode it for training.

* binary: exactly two distinct values (bool, 0/1 or any two labels); the
  positive class is ``True``, the larger number, the later string in sort
  order, or ``positive_label`` when given. Encoded as 0.0 / 1.0.
* multiclass: two or more labels, encoded as ``0..k-1`` in sorted label order.
* regression: finite numbers, not all equal.

Missing target values are an error rather than silently dropped rows, so the
row counts a user sees are the rows that were trained on.

>>> import pandas as pd
>>> encode_target(pd.Series(["no", "yes", "no"]), task=Task.BINARY, name="churn")
(array([0., 1., 0.]), ['no', 'yes'])
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from setpoint.config.spec import Task
from setpoint.errors import TrainingError
from setpoint.train.tabular_model import json_safe_label

__all__ = ["MAX_CLASSES", "encode_target"]

# More labels than this is almost always a numeric column declared multiclass.
MAX_CLASSES = 200


def _sorted_labels(values: npt.NDArray[Any]) -> list[Any]:
    labels = [json_safe_label(v) for v in values]
    try:
        return sorted(labels)
    except TypeError:  # mixed types: order by text, then type, for a stable order
        return sorted(labels, key=lambda v: (str(v), type(v).__name__))


def encode_target(
    values: pd.Series, *, task: Task, name: str, positive_label: Any = None
) -> tuple[npt.NDArray[np.float64], list[Any]]:
    """``(y, classes)``: the encoded target and the JSON-safe class labels (none for regression)."""
    missing = int(values.isna().sum())
    if missing:
        raise TrainingError(
            f"The target column {name!r} has {missing} missing values; drop or fill those "
            "rows before training.",
            column=name,
        )
    if len(values) == 0:
        raise TrainingError(f"The target column {name!r} has no rows.", column=name)
    if task is Task.REGRESSION:
        if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
            raise TrainingError(
                f"The regression target {name!r} must be numeric, not {values.dtype}.",
                column=name,
            )
        y = values.to_numpy(dtype=np.float64)
        if not np.isfinite(y).all():
            raise TrainingError(f"The target column {name!r} has infinite values.", column=name)
        if np.ptp(y) == 0:
            raise TrainingError(
                f"The target column {name!r} has one value only ({y[0]!r}); there is "
                "nothing to learn.",
                column=name,
            )
        return y, []

    distinct = pd.unique(values)
    if len(distinct) < 2:
        raise TrainingError(
            f"The target column {name!r} has one class only ({json_safe_label(distinct[0])!r}); "
            "a classifier needs at least two.",
            column=name,
        )
    classes = _sorted_labels(np.asarray(distinct, dtype=object))
    if task is Task.BINARY:
        if len(classes) != 2:
            raise TrainingError(
                f"The binary target {name!r} has {len(classes)} distinct values "
                f"({classes[:5]}...); use task 'multiclass' or recode it.",
                column=name,
            )
        if positive_label is not None:
            if positive_label not in classes:
                raise TrainingError(
                    f"positive_label {positive_label!r} is not a value of {name!r} ({classes}).",
                    column=name,
                )
            classes = [c for c in classes if c != positive_label] + [positive_label]
    elif len(classes) > MAX_CLASSES:
        raise TrainingError(
            f"The multiclass target {name!r} has {len(classes)} distinct values (at most "
            f"{MAX_CLASSES}); is it a regression target?",
            column=name,
        )
    codes = {label: float(code) for code, label in enumerate(classes)}
    # Each distinct value is encoded once (the same equality as pd.unique above),
    # then the codes are spread to the rows.
    positions, uniques = pd.factorize(values, use_na_sentinel=True)
    table = np.asarray([codes[json_safe_label(v)] for v in uniques], dtype=np.float64)
    y = table[positions]
    return y, classes
