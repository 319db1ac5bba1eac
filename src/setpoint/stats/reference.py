"""A compact summary of a reference frame (the champion's training data), built once.

Drift is measured against the summary, never against the raw reference, so a
monitoring run reads only the current window. Per numeric column the summary
keeps bin edges and counts, the moments, and a seeded stratified sample (for
the Kolmogorov-Smirnov test and the Wasserstein distance); per categorical column
the category counts. It serialises to plain JSON (``to_dict``/``from_dict``),
never to a pickle.

The bins and the sample are described in ``setpoint.stats.summaries``.

Missing values are None, NaN or NA; in numeric columns infinities count as
missing too, as in Evidently.

>>> import numpy as np
>>> import pandas as pd
>>> rng = np.random.default_rng(0)
>>> frame = pd.DataFrame({"x": rng.normal(10, 2, 1000), "c": rng.choice(["a", "b"], 1000)})
>>> ref = Reference.build(frame, numeric=["x"], categorical=["c"], bins=4, sample_size=100)
>>> ref.features, ref.n_rows, ref.numeric_summary("x").counts, len(ref.numeric_summary("x").sample)
(('x', 'c'), 1000, (0, 250, 250, 250, 250, 0), 100)
>>> ref.categorical_summary("c").categories, ref.categorical_summary("c").counts
(('b', 'a'), (523, 477))
>>> Reference.from_dict(ref.to_dict()) == ref
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from setpoint.errors import DataError, InvalidParameterError
from setpoint.stats._columns import Frame, column, numeric_values, row_count
from setpoint.stats.summaries import (
    CategoricalSummary,
    ColumnSummary,
    NumericSummary,
    summarize_categorical,
    summarize_numeric,
)

__all__ = ["FORMAT", "CategoricalSummary", "ColumnSummary", "NumericSummary", "Reference"]

FORMAT = "setpoint.stats.reference/1"
Kind = Literal["numeric", "categorical"]


def _fail(parameter: str, expected: str, got: Any) -> InvalidParameterError:
    return InvalidParameterError(
        owner="Reference.build", parameter=parameter, expected=expected, got=got
    )


@dataclass(frozen=True)
class Reference:
    """Summaries of the monitored columns of a reference frame; build with ``Reference.build``.

    ``numeric`` and ``categorical`` name the model's features; ``prediction``
    (the model's score, numeric) and ``label`` (the predicted class,
    categorical) are optional and summarised the same way. ``columns`` maps
    every one of them to its summary.
    """

    columns: Mapping[str, ColumnSummary]
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    prediction: str | None
    label: str | None
    n_rows: int
    bins: int
    top_k: int
    sample_size: int
    seed: int

    @property
    def features(self) -> tuple[str, ...]:
        return self.numeric + self.categorical

    def numeric_summary(self, name: str) -> NumericSummary:
        summary = self.columns[name]
        if not isinstance(summary, NumericSummary):
            raise InvalidParameterError(
                owner="Reference", parameter="name", expected="a numeric column", got=name
            )
        return summary

    def categorical_summary(self, name: str) -> CategoricalSummary:
        summary = self.columns[name]
        if not isinstance(summary, CategoricalSummary):
            raise InvalidParameterError(
                owner="Reference", parameter="name", expected="a categorical column", got=name
            )
        return summary

    @classmethod
    def build(
        cls,
        frame: Frame,
        *,
        numeric: Sequence[str],
        categorical: Sequence[str],
        prediction: str | None = None,
        label: str | None = None,
        bins: int = 10,
        top_k: int = 1000,
        sample_size: int = 5000,
        seed: int = 0,
    ) -> Reference:
        """Summarise ``frame`` (a DataFrame or a dict of 1-D arrays) in one pass per column.

        ``bins`` equal-frequency bins per continuous column (10: the deciles PSI
        is usually read on); ``top_k`` categories kept per categorical column;
        at most ``sample_size`` values kept per numeric column (a stratified
        sample drawn with ``seed``).
        """
        numeric, categorical = list(numeric), list(categorical)
        _check_build(numeric, categorical, prediction, label, bins, top_k, sample_size, seed)
        n_rows = row_count(frame, owner="Reference.build", parameter="frame")
        if n_rows == 0:
            raise _fail("frame", "a frame with at least one row", "0 rows")
        columns: dict[str, ColumnSummary] = {}
        for name in [*numeric, *([prediction] if prediction is not None else [])]:
            values = numeric_values(
                column(frame, name, side="reference"), name=name, side="reference"
            )
            columns[name] = summarize_numeric(
                values, name=name, bins=bins, sample_size=sample_size, seed=seed
            )
        for name in [*categorical, *([label] if label is not None else [])]:
            columns[name] = summarize_categorical(
                column(frame, name, side="reference"), name=name, top_k=top_k
            )
        return cls(
            columns=columns,
            numeric=tuple(numeric),
            categorical=tuple(categorical),
            prediction=prediction,
            label=label,
            n_rows=n_rows,
            bins=bins,
            top_k=top_k,
            sample_size=sample_size,
            seed=seed,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description (NaN as null), read back by ``from_dict``."""
        return {
            "format": FORMAT,
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "prediction": self.prediction,
            "label": self.label,
            "n_rows": self.n_rows,
            "bins": self.bins,
            "top_k": self.top_k,
            "sample_size": self.sample_size,
            "seed": self.seed,
            "columns": [summary.to_dict() for summary in self.columns.values()],
        }

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> Reference:
        """The reference ``to_dict`` described; a malformed description is a ``DataError``."""
        try:
            if payload.get("format") != FORMAT:
                raise ValueError(f"format is {payload.get('format')!r}, expected {FORMAT!r}")
            columns: dict[str, ColumnSummary] = {}
            for item in payload["columns"]:
                summary = _summary_from_dict(item)
                columns[summary.name] = summary
            reference = cls(
                columns=columns,
                numeric=tuple(str(n) for n in payload["numeric"]),
                categorical=tuple(str(n) for n in payload["categorical"]),
                prediction=None if payload["prediction"] is None else str(payload["prediction"]),
                label=None if payload["label"] is None else str(payload["label"]),
                n_rows=int(payload["n_rows"]),
                bins=int(payload["bins"]),
                top_k=int(payload["top_k"]),
                sample_size=int(payload["sample_size"]),
                seed=int(payload["seed"]),
            )
            _check_kinds(reference)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"The reference description is malformed: {exc}") from exc
        return reference


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _summary_from_dict(item: Mapping[str, Any]) -> ColumnSummary:
    kind = item["kind"]
    name = str(item["name"])
    if kind == "numeric":
        summary = NumericSummary(
            name=name,
            n=int(item["n"]),
            missing=int(item["missing"]),
            mean=_float(item["mean"]),
            std=_float(item["std"]),
            min=_float(item["min"]),
            max=_float(item["max"]),
            n_unique=int(item["n_unique"]),
            discrete=bool(item["discrete"]),
            edges=tuple(float(e) for e in item["edges"]),
            counts=tuple(int(c) for c in item["counts"]),
            sample=tuple(float(v) for v in item["sample"]),
        )
        if len(summary.counts) != len(summary.edges) + 1 or list(summary.edges) != sorted(
            summary.edges
        ):
            raise ValueError(f"column {name!r}: edges unsorted or counts of the wrong length")
        return summary
    if kind == "categorical":
        categories = tuple(item["categories"])
        if not all(isinstance(c, str | int | float | bool) for c in categories):
            raise ValueError(f"column {name!r}: a category is not a JSON scalar")
        summary_c = CategoricalSummary(
            name=name,
            n=int(item["n"]),
            missing=int(item["missing"]),
            n_unique=int(item["n_unique"]),
            categories=categories,
            counts=tuple(int(c) for c in item["counts"]),
            other=int(item["other"]),
        )
        if len(summary_c.categories) != len(summary_c.counts):
            raise ValueError(f"column {name!r}: categories and counts differ in length")
        return summary_c
    raise ValueError(f"column {name!r}: unknown kind {kind!r}")


def _check_kinds(reference: Reference) -> None:
    wanted: dict[str, Kind] = dict.fromkeys(reference.numeric, "numeric")
    wanted |= dict.fromkeys(reference.categorical, "categorical")
    if reference.prediction is not None:
        wanted[reference.prediction] = "numeric"
    if reference.label is not None:
        wanted[reference.label] = "categorical"
    got = {name: summary.kind for name, summary in reference.columns.items()}
    if wanted != got:
        raise ValueError(f"the columns {sorted(got)} do not match the roles {sorted(wanted)}")


def _check_build(
    numeric: list[str],
    categorical: list[str],
    prediction: str | None,
    label: str | None,
    bins: int,
    top_k: int,
    sample_size: int,
    seed: int,
) -> None:
    names = [*numeric, *categorical]
    if not names:
        raise _fail("numeric", "at least one feature (numeric or categorical)", [])
    for parameter, group in (("numeric", numeric), ("categorical", categorical)):
        if not all(isinstance(n, str) for n in group):
            raise _fail(parameter, "a list of column names", group)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise _fail("categorical", "names not already listed (each column once)", repeated)
    for parameter, extra in (("prediction", prediction), ("label", label)):
        if extra is not None and extra in names:
            raise _fail(parameter, "a column that is not a feature", extra)
    if prediction is not None and prediction == label:
        raise _fail("label", "a column other than the prediction", label)
    checks = (("bins", bins, 2), ("top_k", top_k, 1), ("sample_size", sample_size, 10))
    for parameter, value, low in checks:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise _fail(parameter, f"an integer of at least {low}", value)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise _fail("seed", "a non-negative integer", seed)
