"""Turn raw feature columns into the numeric matrix a model family needs.

Two layouts, chosen with ``mode``:

* ``"tree"`` (LightGBM): numerics as they are, NaN kept (trees route missing
  values themselves), then one integer code per categorical column, to be
  declared as a categorical feature.
* ``"linear"``: median-imputed numerics, then a one-hot block per categorical
  column, then every column standardised with the training mean and scale.

Category codes are ordered by training frequency: ``0`` is the most frequent
kept category. Categories seen fewer than ``min_category_count`` times, beyond
``max_categories``, or never seen at all share the *other* code, so unseen
values at serving time are never an error. Missing values have their own code.

``transform`` takes a DataFrame or a plain mapping of column name to values, so
the serving path can skip building a DataFrame.

>>> pre = Preprocessor(["x"], ["c"], min_category_count=2).fit(
...     {"x": [1.0, None, 3.0], "c": ["a", "a", "b"]})
>>> pre.transform({"x": [None], "c": ["zzz"]}).tolist()
[[nan, 1.0]]
>>> pre.categories_
{'c': ['a']}
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from setpoint.errors import InvalidParameterError, SchemaError, TrainingError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FORMAT_VERSION", "Columns", "Preprocessor", "category_key"]

FORMAT_VERSION = 1
Mode = Literal["tree", "linear"]
FloatArray = npt.NDArray[np.float64]
#: A DataFrame, or a mapping of column name to a sequence, array or single value.
Columns: TypeAlias = "pd.DataFrame | Mapping[str, Any]"


def category_key(value: Any) -> str | None:
    """The canonical string of a categorical value; ``None`` means missing.

    Integral floats collapse onto integers because a column that picks up a
    NaN in pandas turns ``1`` into ``1.0`` while a JSON request still sends ``1``.

    >>> [category_key(v) for v in ["a", 3, 3.0, 2.5, True, None, float("nan")]]
    ['a', '3', '3', '2.5', 'True', None, None]
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isnan(number):
            return None
        return str(int(number)) if number.is_integer() else repr(number)
    try:
        if value != value:  # NaT
            return None
    except TypeError:  # pd.NA refuses to be a bool
        return None
    return str(value)


def _column(data: Columns, name: str) -> Any:
    try:
        values = data[name]
    except (KeyError, IndexError) as exc:
        raise SchemaError(f"Column {name!r} is missing from the input.", column=name) from exc
    if isinstance(values, str) or np.ndim(values) == 0:
        return [values]  # a scalar is a one-row request
    return values


def _numeric(values: Any, name: str) -> FloatArray:
    try:
        to_numpy = getattr(values, "to_numpy", None)
        if to_numpy is not None:  # pandas: nullable dtypes need an explicit NA value
            column = np.asarray(to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
        else:
            column = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"Column {name!r} must be numeric: {exc}", column=name) from exc
    # An infinity would poison the median, the scaling and the JSON: treat it as missing.
    # Without one, the column is returned as it is (possibly a view: callers only read it).
    infinite = np.isinf(column)
    return np.where(infinite, np.nan, column) if infinite.any() else column


def _objects(values: Any) -> list[Any]:
    to_numpy = getattr(values, "to_numpy", None)
    array = to_numpy(dtype=object) if to_numpy is not None else np.asarray(values, dtype=object)
    return list(np.ravel(array).tolist())


def _distinct(values: Any) -> tuple[npt.NDArray[np.intp], list[Any]] | None:
    """Each row's position among the distinct values, and those values; -1 is missing.

    Only for a pandas column whose present values all share one Python type
    (a numeric, boolean or string dtype, or object text), where pandas' hashing
    of values agrees with the typed keys of the row-by-row path; anything else
    returns ``None`` and takes that path.
    """
    dtype = getattr(values, "dtype", None)
    if dtype is None or getattr(values, "ndim", 0) != 1 or not hasattr(values, "to_numpy"):
        return None
    import pandas as pd  # a pandas column: pandas is already imported

    homogeneous = getattr(dtype, "kind", "O") in "biuf" or isinstance(dtype, pd.StringDtype)
    if not homogeneous and dtype == np.dtype(object):
        homogeneous = pd.api.types.infer_dtype(values, skipna=True) == "string"
    if not homogeneous:
        return None
    positions, uniques = pd.factorize(values, use_na_sentinel=True)
    return np.asarray(positions, dtype=np.intp), list(uniques)


class Preprocessor:
    """Learns imputation, category codes and scaling on training rows."""

    def __init__(
        self,
        numeric: Sequence[str],
        categorical: Sequence[str],
        *,
        mode: Mode = "tree",
        min_category_count: int = 10,
        max_categories: int = 1000,
    ) -> None:
        self.numeric = numeric
        self.categorical = categorical
        self.mode = mode
        self.min_category_count = min_category_count
        self.max_categories = max_categories

    def _check_params(self) -> None:
        owner = "Preprocessor"
        names = [*self.numeric, *self.categorical]
        if not names or not all(isinstance(n, str) for n in names):
            raise InvalidParameterError(
                owner=owner, parameter="numeric", expected="column names, not all empty", got=names
            )
        if len(set(names)) != len(names):
            raise InvalidParameterError(
                owner=owner, parameter="categorical", expected="distinct from numeric", got=names
            )
        if self.mode not in ("tree", "linear"):
            raise InvalidParameterError(
                owner=owner, parameter="mode", expected="'tree' or 'linear'", got=self.mode
            )
        for parameter in ("min_category_count", "max_categories"):
            value = getattr(self, parameter)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidParameterError(
                    owner=owner, parameter=parameter, expected="an integer >= 1", got=value
                )

    def fit(self, data: Columns) -> Preprocessor:
        """Learn from a DataFrame (or a mapping of columns) of training rows."""
        self.__dict__.pop("_code_tables", None)  # codes of an earlier fit
        self._check_params()
        self.medians_: dict[str, float] = {}
        for name in self.numeric:
            column = _numeric(_column(data, name), name)
            present = column[~np.isnan(column)]
            # An all-missing column imputes to 0 so that the JSON never holds NaN.
            self.medians_[name] = float(np.median(present)) if present.size else 0.0
        self.categories_: dict[str, list[str]] = {}
        for name in self.categorical:
            counts: Counter[str] = Counter()
            column = _column(data, name)
            distinct = _distinct(column)
            tallied: Iterable[tuple[Any, int]]
            if distinct is not None:
                positions, uniques = distinct
                tally = np.bincount(positions[positions >= 0], minlength=len(uniques))
                tallied = zip(uniques, tally.tolist(), strict=True)
            else:
                values = _objects(column)
                # Typed keys: True == 1 in Python, yet they are different categories.
                typed = Counter(zip(map(type, values), values, strict=True))
                tallied = ((value, count) for (_, value), count in typed.items())
            for value, count in tallied:
                key = category_key(value)
                if key is not None:
                    counts[key] += count
            # Ties sort by name so that the codes do not depend on row order.
            ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
            kept = [k for k, c in ranked if c >= self.min_category_count]
            self.categories_[name] = kept[: self.max_categories]
        self.mean_: list[float] = []
        self.scale_: list[float] = []
        if self.mode == "linear":
            matrix = self._layout(data)
            with np.errstate(over="ignore", invalid="ignore"):
                mean = matrix.mean(axis=0)
                std = matrix.std(axis=0)
            broken = [
                name
                for name, m, v in zip(self.feature_names_out(), mean, std, strict=True)
                if not (np.isfinite(m) and np.isfinite(v))
            ]
            if broken:
                raise TrainingError(
                    f"Column(s) {broken} hold values too large to standardize for the "
                    "linear family (their mean or spread overflows); clip or exclude them, "
                    "or use family: lightgbm.",
                    columns=broken,
                )
            self.mean_ = [float(v) for v in mean]
            # A constant column stays constant (0) instead of dividing by zero.
            self.scale_ = [float(v) if v > 0 else 1.0 for v in std]
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "medians_"):
            raise TrainingError("This Preprocessor is not fitted yet; call fit() first.")

    def codes(self, values: Any, name: str) -> FloatArray:
        """Category codes of one column: kept categories, then *other*, then *missing*."""
        self._check_fitted()
        lookup, other, missing = self._code_table(name)
        distinct = _distinct(values)
        if distinct is not None:
            positions, uniques = distinct
            keys_of = map(category_key, uniques)
            table = [missing if k is None else lookup.get(k, other) for k in keys_of]
            # Position -1 (a missing value) picks the last entry: the missing code.
            return np.asarray([*table, missing], dtype=np.float64)[positions]
        items = _objects(values)
        # Typed keys, since True == 1 in Python yet they are different categories.
        keys = list(zip(map(type, items), items, strict=True))
        codes: dict[tuple[type, Any], float] = {}
        for typed in set(keys):  # each distinct value is normalised once
            key = category_key(typed[1])
            codes[typed] = missing if key is None else lookup.get(key, other)
        return np.fromiter(map(codes.__getitem__, keys), np.float64, len(keys))

    def _code_table(self, name: str) -> tuple[dict[str, float], float, float]:
        """Code of each kept category of ``name``, then the *other* and *missing* codes."""
        cache: dict[str, tuple[dict[str, float], float, float]] = self.__dict__.setdefault(
            "_code_tables", {}
        )
        if name not in cache:  # built once: a server looks them up for every request
            kept = self.categories_[name]
            lookup = {key: float(code) for code, key in enumerate(kept)}
            cache[name] = (lookup, float(len(kept)), float(len(kept) + 1))
        return cache[name]

    def transform_checked(self, columns: Mapping[str, Any]) -> FloatArray:
        """``transform`` for columns a request validator has already checked.

        Numbers are float64 arrays without infinities and categories are their
        canonical keys (``category_key``) or None, so the per-column type
        handling of ``transform``, most of the cost of a one-row call, is skipped.
        Linear models take the general path.
        """
        self._check_fitted()
        if self.mode != "tree":
            return self.transform(columns)
        width = len(self.numeric) + len(self.categorical)
        rows = len(columns[self.numeric[0] if self.numeric else self.categorical[0]])
        matrix = np.empty((rows, width), dtype=np.float64, order="F")
        for position, name in enumerate(self.numeric):
            matrix[:, position] = columns[name]
        start = len(self.numeric)
        for position, name in enumerate(self.categorical, start):
            lookup, other, missing = self._code_table(name)
            matrix[:, position] = [
                missing if key is None else lookup.get(key, other) for key in columns[name]
            ]
        return matrix

    def _layout(self, data: Columns) -> FloatArray:
        blocks: list[FloatArray] = []
        rows: int | None = None
        for name in self.numeric:
            column = _numeric(_column(data, name), name)
            if self.mode == "linear":
                column = np.where(np.isnan(column), self.medians_[name], column)
            blocks.append(column.reshape(-1, 1))
        for name in self.categorical:
            codes = self.codes(_column(data, name), name)
            if self.mode == "linear":
                width = len(self.categories_[name]) + 2
                onehot = np.zeros((codes.size, width), dtype=np.float64)
                onehot[np.arange(codes.size), codes.astype(np.intp)] = 1.0
                blocks.append(onehot)
            else:
                blocks.append(codes.reshape(-1, 1))
        for block in blocks:
            if rows is not None and block.shape[0] != rows:
                raise SchemaError(f"Columns have different lengths ({rows} and {block.shape[0]}).")
            rows = block.shape[0]
        if self.mode == "tree":
            # Column-major: one contiguous write per column, and LightGBM reads this
            # layout as it is (the same model bytes as from a row-major copy).
            matrix = np.empty((rows or 0, len(blocks)), dtype=np.float64, order="F")
            for position, block in enumerate(blocks):
                matrix[:, position] = block[:, 0]
            return matrix
        return np.hstack(blocks)

    def transform(self, data: Columns) -> FloatArray:
        """The float64 matrix for ``data``, columns in ``feature_names_out()`` order."""
        self._check_fitted()
        matrix = self._layout(data)
        if self.mode == "linear":
            # In place: the one-hot matrix can be large and is ours to change.
            matrix -= np.asarray(self.mean_)
            matrix /= np.asarray(self.scale_)
        return matrix

    def fit_transform(self, data: Columns) -> FloatArray:
        return self.fit(data).transform(data)

    def feature_names_out(self) -> list[str]:
        """Names of the output columns; one-hot columns read ``column=category``."""
        self._check_fitted()
        if self.mode == "tree":
            return [*self.numeric, *self.categorical]
        names = list(self.numeric)
        for name in self.categorical:
            names += [f"{name}={c}" for c in self.categories_[name]]
            names += [f"{name}=<other>", f"{name}=<missing>"]
        return names

    def source_columns(self) -> list[str]:
        """For each output column, the input column it comes from."""
        self._check_fitted()
        if self.mode == "tree":
            return [*self.numeric, *self.categorical]
        sources = list(self.numeric)
        for name in self.categorical:
            sources += [name] * (len(self.categories_[name]) + 2)
        return sources

    @property
    def categorical_indices(self) -> list[int]:
        """Output positions that LightGBM must treat as categorical (tree mode)."""
        if self.mode != "tree":
            return []
        start = len(self.numeric)
        return list(range(start, start + len(self.categorical)))

    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "format_version": FORMAT_VERSION,
            "mode": self.mode,
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "min_category_count": self.min_category_count,
            "max_categories": self.max_categories,
            "medians": dict(self.medians_),
            "categories": {k: list(v) for k, v in self.categories_.items()},
            "mean": list(self.mean_),
            "scale": list(self.scale_),
        }

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> Preprocessor:
        version = payload.get("format_version")
        if version != FORMAT_VERSION:
            raise TrainingError(
                f"Unsupported preprocessor format version {version!r} "
                f"(this setpoint reads version {FORMAT_VERSION})."
            )
        try:
            pre = cls(
                list(payload["numeric"]),
                list(payload["categorical"]),
                mode=payload["mode"],
                min_category_count=int(payload["min_category_count"]),
                max_categories=int(payload["max_categories"]),
            )
            pre._check_params()
            pre.medians_ = {str(k): float(v) for k, v in payload["medians"].items()}
            pre.categories_ = {
                str(k): [str(c) for c in v] for k, v in payload["categories"].items()
            }
            pre.mean_ = [float(v) for v in payload["mean"]]
            pre.scale_ = [float(v) for v in payload["scale"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise TrainingError(f"The preprocessor description is malformed: {exc}") from exc
        width = len(pre.feature_names_out()) if pre.mode == "linear" else 0
        if (
            set(pre.medians_) != set(pre.numeric)
            or set(pre.categories_) != set(pre.categorical)
            or len(pre.mean_) != width
            or len(pre.scale_) != width
        ):
            raise TrainingError("The preprocessor description does not match its column lists.")
        return pre
