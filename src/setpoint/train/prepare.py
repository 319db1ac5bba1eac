"""Everything before model fitting: target encoding, the split, preprocessing.

Shared by ``train_model`` and ``tune`` so that a search scores candidates on
exactly the matrices the final training will use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from setpoint.config.spec import ModelRecipe, Task
from setpoint.errors import TrainingError
from setpoint.train.preprocess import Preprocessor
from setpoint.train.split import Split, time_split
from setpoint.train.target import encode_target

__all__ = ["Prepared", "prepare"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Prepared:
    """The split, the fitted preprocessor and the matrices of every slice."""

    task: Task
    target: str
    classes: list[Any]
    split: Split
    preprocessor: Preprocessor
    x: dict[str, FloatArray]
    y: dict[str, FloatArray]


def prepare(
    df: pd.DataFrame,
    *,
    task: Task,
    target: str,
    features_numeric: Sequence[str],
    features_categorical: Sequence[str],
    timestamp: str | None,
    recipe: ModelRecipe,
    positive_label: Any = None,
) -> Prepared:
    """Encode the target, split the rows and preprocess every slice."""
    y, classes = encode_target(df[target], task=task, name=target, positive_label=positive_label)
    # The shuffled split (no timestamp) keeps time_split's default seed, not
    # recipe.seed: models trained with different seeds must share a test slice for
    # a promotion gate to compare them, and a caller recomputing the split with
    # time_split(df, timestamp=..., split=...) must get the same rows.
    split = time_split(df, timestamp=timestamp, split=recipe.split, target=target, task=task)
    rows = {"train": split.train, "valid": split.valid, "test": split.test}
    if task is Task.MULTICLASS:
        absent = sorted(set(range(len(classes))) - set(y[split.train].astype(int).tolist()))
        if absent:
            raise TrainingError(
                f"Classes {[classes[i] for i in absent]} of {target!r} have no training rows "
                "(the training slice is the earliest data); drop them or use more history.",
                column=target,
            )
    preprocessor = Preprocessor(
        list(features_numeric),
        list(features_categorical),
        mode="tree" if recipe.family == "lightgbm" else "linear",
        # One-hot blocks are dense; cap them for the linear family.
        max_categories=1000 if recipe.family == "lightgbm" else 100,
    )
    features = df[[*features_numeric, *features_categorical]]  # slices copy only these
    preprocessor.fit(features.iloc[split.train])
    x = {name: preprocessor.transform(features.iloc[index]) for name, index in rows.items()}
    return Prepared(
        task=task,
        target=target,
        classes=classes,
        split=split,
        preprocessor=preprocessor,
        x=x,
        y={name: y[index] for name, index in rows.items()},
    )
