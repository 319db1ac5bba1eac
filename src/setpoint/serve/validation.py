"""Request validation for the prediction server: JSON records in, model columns out.

A :class:`RequestValidator` is built once per model version from the schema the
model was trained on. It checks every field of every record in one pass of
plain Python (no pandas: a single record takes a few microseconds) and returns
the columns that ``TabularModel.predict_scores`` takes::

    validator = RequestValidator(schema, features=model.features)
    batch = validator.validate([{"origin": "JFK", "temp": 41.0, ...}])
    scores = model.predict_scores(batch.columns)

Numeric columns are float64 arrays, NaN where a value is missing (allowed in
a nullable column) or imputed. Categorical columns are object arrays of str,
``None`` where missing; a category the schema never saw is kept as it is, as
the model maps it to its *other* code. Numbers sent for a categorical are
turned into the strings training saw (``3`` and ``3.0`` become ``"3"``).

What counts as bad, by ``kind``:

* ``missing_feature``: the field is absent and its column is not nullable
  (an absent field of a nullable column is a null).
* ``null_not_allowed``: null in a column that is not nullable.
* ``type_mismatch``: text, a list, an object or a boolean where a number is
  expected; a boolean, list or object where a category is expected.
  Booleans are not numbers, and numbers in strings are not numbers.
* ``non_finite``: NaN, Infinity or -Infinity, as floats or as the strings some
  JSON encoders write instead.
* ``out_of_range``: a number outside the schema's ``[min, max]``, or an integer
  beyond the range of a float.
* ``unseen_category``: a category not in the schema's categories (only when
  the schema lists them).
* ``unknown_field``: a field that is not a column of the schema. Columns of the
  schema the model does not use (the target, the timestamp) are ignored.

With ``on_invalid="reject"`` any of these raises :class:`InvalidRequestError`
naming each bad field of each record, except an unseen category when
``unseen_category="accept"``: that one is kept and flagged, as a new value
(a new route, a new product) is news, not an error. With ``on_invalid="impute"`` the bad
value becomes missing (NaN or ``None``), an unseen category is kept and an
unknown field ignored, and each is reported in ``ValidatedBatch.flags``.

Whatever the mode, the batch itself is refused when it is not a list
(``not_a_list``), is empty (``empty_batch``), holds more than ``max_batch``
records (``batch_too_large``, raised as :class:`BatchTooLargeError`, which the
server answers 413) or holds a record that is not a JSON object (``not_an_object``).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from setpoint.data.schema import Schema
from setpoint.errors import BatchTooLargeError, InvalidParameterError, InvalidRequestError
from setpoint.train.preprocess import category_key

__all__ = ["FieldIssue", "InvalidRequestError", "RequestValidator", "ValidatedBatch"]

IssueKind = Literal[
    "missing_feature",
    "type_mismatch",
    "out_of_range",
    "unseen_category",
    "non_finite",
    "null_not_allowed",
    "unknown_field",
    "not_an_object",
    "not_a_list",
    "empty_batch",
    "batch_too_large",
]

_FLOAT_MAX = sys.float_info.max
_NON_FINITE_TEXT = frozenset(
    {"nan", "-nan", "+nan", "inf", "-inf", "+inf", "infinity", "-infinity", "+infinity"}
)
_MISSING: Any = object()  # an absent field; distinct from an explicit null
_SHOWN_ERRORS = 5  # errors spelled out in the message; all of them are in ``.errors``


def _invalid(
    errors: list[dict[str, Any]], *, kind: type[InvalidRequestError] = InvalidRequestError
) -> InvalidRequestError:
    """The error for ``errors``, its message spelling out the first few."""
    shown = "; ".join(_describe(e) for e in errors[:_SHOWN_ERRORS])
    more = len(errors) - _SHOWN_ERRORS
    records = {e["record"] for e in errors if e["record"] is not None}
    head = (
        f"The request has {len(errors)} invalid field(s) in {len(records)} record(s): "
        if records
        else "The request is invalid: "
    )
    return kind(head + shown + (f"; and {more} more." if more > 0 else "."), errors=errors)


def _describe(error: dict[str, Any]) -> str:
    where = [] if error["record"] is None else [f"record {error['record']}"]
    if error["field"] is not None:
        where.append(f"field {error['field']!r}")
    prefix = " ".join(where) + ": " if where else ""
    return f"{prefix}{error['kind']} ({error['detail']})"


@dataclass(frozen=True, slots=True)
class FieldIssue:
    """One field of one record that was imputed, kept or ignored, and why."""

    field: str
    kind: IssueKind
    detail: str

    def to_dict(self, record: int) -> dict[str, Any]:
        """The issue as an entry of ``InvalidRequestError.errors``."""
        return {"record": record, "field": self.field, "kind": self.kind, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class ValidatedBatch:
    """Model-ready columns, one array per feature, and per record what was imputed."""

    columns: dict[str, npt.NDArray[Any]]
    flags: list[list[FieldIssue]]


@dataclass(frozen=True, slots=True)
class _Column:
    name: str
    numeric: bool
    nullable: bool
    low: float  # numeric: bounds, the float range when the schema has none
    high: float
    categories: frozenset[str] | None  # categorical: None accepts any category


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"


def _number(col: _Column, value: Any) -> tuple[float, IssueKind | None, str]:
    """``value`` as a number of ``col``, or NaN and why it is invalid (fast path failed).

    The fast path takes exact ``int`` and ``float``; subclasses and numpy
    scalars (from Python callers, not JSON) are accepted here.
    """
    if value is _MISSING:
        return math.nan, "missing_feature", "absent, and the column is not nullable"
    if value is None:
        return math.nan, "null_not_allowed", "null, and the column is not nullable"
    if isinstance(value, bool | np.bool_) or not isinstance(
        value, int | float | np.integer | np.floating
    ):
        if isinstance(value, str) and value.strip().lower() in _NON_FINITE_TEXT:
            return math.nan, "non_finite", f"{_show(value)} is not a finite number"
        detail = f"expected a number, got {_type_name(value)}: {_show(value)}"
        return math.nan, "type_mismatch", detail
    if isinstance(value, np.generic):
        value = value.item()  # compared as a numpy scalar, a float32 would overflow
    if not -_FLOAT_MAX <= value <= _FLOAT_MAX:  # exact for ints; False for NaN
        if isinstance(value, float) and not math.isfinite(value):
            return math.nan, "non_finite", f"{value!r} is not a finite number"
        return math.nan, "out_of_range", f"{_show(value)} is beyond the range of a float"
    if not col.low <= value <= col.high:
        return math.nan, "out_of_range", f"{_show(value)} is outside [{col.low!r}, {col.high!r}]"
    return float(value), None, ""


def _category(col: _Column, value: Any) -> tuple[str | None, IssueKind | None, str]:
    """The category of ``value``, or ``None`` and why it is invalid (fast path failed).

    An unseen category is returned with its issue: it is kept in impute mode.
    """
    if value is _MISSING:
        return None, "missing_feature", "absent, and the column is not nullable"
    if value is None:
        if col.nullable:
            return None, None, ""
        return None, "null_not_allowed", "null, and the column is not nullable"
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None, "type_mismatch", f"expected text, got {_type_name(value)}: {_show(value)}"
    if isinstance(value, float) and not math.isfinite(value):
        return None, "non_finite", f"{value!r} is not a category"
    key = category_key(value)
    if key is None:  # pragma: no cover - category_key maps only missing values to None
        return None, "type_mismatch", f"expected text, got {_show(value)}"
    if col.categories is not None and key not in col.categories:
        return key, "unseen_category", f"{_show(key)} is not one of the schema's categories"
    return key, None, ""


class RequestValidator:
    """Checks prediction requests against a schema; build one per model version.

    ``features`` are the model's input columns, each a ``numeric`` or
    ``categorical`` column of ``schema``; ``validate`` returns them in this order.
    """

    def __init__(
        self,
        schema: Schema,
        *,
        features: list[str],
        on_invalid: Literal["reject", "impute"] = "reject",
        unseen_category: Literal["reject", "accept"] = "reject",
        max_batch: int = 1000,
    ) -> None:
        owner = "RequestValidator"
        if not isinstance(schema, Schema):
            raise InvalidParameterError(
                owner=owner, parameter="schema", expected="a Schema", got=type(schema).__name__
            )
        if on_invalid not in ("reject", "impute"):
            raise InvalidParameterError(
                owner=owner, parameter="on_invalid", expected="'reject' or 'impute'", got=on_invalid
            )
        if unseen_category not in ("reject", "accept"):
            raise InvalidParameterError(
                owner=owner,
                parameter="unseen_category",
                expected="'reject' or 'accept'",
                got=unseen_category,
            )
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise InvalidParameterError(
                owner=owner, parameter="max_batch", expected="an int >= 1", got=max_batch
            )
        if (
            not isinstance(features, list | tuple)
            or not features
            or not all(isinstance(f, str) for f in features)
            or len(set(features)) != len(features)
        ):
            raise InvalidParameterError(
                owner=owner,
                parameter="features",
                expected="a non-empty list of distinct column names",
                got=features,
            )
        columns: list[_Column] = []
        for name in features:
            col = schema.column(name)  # a SchemaError naming close matches if absent
            if col.kind not in ("numeric", "categorical"):
                raise InvalidParameterError(
                    owner=owner,
                    parameter="features",
                    expected="numeric or categorical columns",
                    got=f"{name!r} of kind {col.kind!r}",
                )
            columns.append(
                _Column(
                    name=name,
                    numeric=col.kind == "numeric",
                    nullable=col.nullable,
                    low=-_FLOAT_MAX if col.min is None else col.min,
                    high=_FLOAT_MAX if col.max is None else col.max,
                    categories=None if col.categories is None else frozenset(col.categories),
                )
            )
        self.schema = schema
        self.features = list(features)
        self.on_invalid = on_invalid
        self.unseen_category = unseen_category
        self.max_batch = max_batch
        self._columns = tuple(columns)
        self._known = frozenset(schema.names)
        self._impute = on_invalid == "impute"
        numeric_names = [c.name for c in columns if c.numeric]
        text_names = [c.name for c in columns if not c.numeric]
        self._slots = tuple(
            (c.name, c.numeric, (numeric_names if c.numeric else text_names).index(c.name))
            for c in columns
        )
        # What the per-record loop needs, unpacked once.
        self._plan = tuple(
            (c.name, c.numeric, c.nullable, c.low, c.high, c.categories) for c in columns
        )

    def validate(self, records: list[dict[str, Any]]) -> ValidatedBatch:
        """Check ``records`` and return their columns; see the module docstring.

        Raises :class:`InvalidRequestError` listing every bad field of every
        record (reject mode) or what cannot be imputed (the batch, a record that
        is not an object).
        """
        batch: Any = records  # decoded JSON: the annotation is what a valid request holds
        if not isinstance(batch, list | tuple):
            raise _invalid(
                [_batch_error("not_a_list", f"expected a list of records, got {_type_name(batch)}")]
            )
        if not batch:
            raise _invalid([_batch_error("empty_batch", "the request holds no record")])
        if len(batch) > self.max_batch:
            raise _invalid(
                [
                    _batch_error(
                        "batch_too_large",
                        f"{len(batch)} records; at most {self.max_batch} per request",
                    )
                ],
                kind=BatchTooLargeError,
            )
        impute = self._impute
        known = self._known
        plan = self._plan
        numbers: list[Any] = []  # row-major: record by record, numeric features in order
        texts: list[str | None] = []  # the same for categorical features
        put_number = numbers.append
        put_text = texts.append
        flags: list[list[FieldIssue]] = []
        errors: list[dict[str, Any]] = []
        nan = math.nan
        for i, record in enumerate(batch):
            issues: list[FieldIssue] = []
            if not isinstance(record, dict):
                errors.append(
                    {
                        "record": i,
                        "field": None,
                        "kind": "not_an_object",
                        "detail": f"expected an object, got {_type_name(record)}",
                    }
                )
                flags.append(issues)
                continue
            if not known.issuperset(record):
                for key in record:
                    if key not in known:
                        detail = "not a column of the schema" + ("; ignored" if impute else "")
                        issues.append(FieldIssue(str(key), "unknown_field", detail))
            for j, (name, numeric, nullable, low, high, categories) in enumerate(plan):
                value = record.get(name, _MISSING)
                kind = type(value)
                if numeric:
                    if (kind is float or kind is int) and low <= value <= high:
                        put_number(value)
                        continue
                    if nullable and (value is None or value is _MISSING):
                        put_number(nan)
                        continue
                    number, issue, detail = _number(self._columns[j], value)
                    put_number(number)
                    if issue is not None:
                        issues.append(FieldIssue(name, issue, detail))
                else:
                    if kind is str and (categories is None or value in categories):
                        put_text(value)
                        continue
                    if nullable and value is _MISSING:
                        put_text(None)
                        continue
                    category, cat_issue, detail = _category(self._columns[j], value)
                    put_text(category)
                    if cat_issue is not None:
                        issues.append(FieldIssue(name, cat_issue, detail))
            flags.append(issues)
        if not impute:
            accept_unseen = self.unseen_category == "accept"
            for i, issues in enumerate(flags):
                if issues:
                    errors.extend(
                        issue.to_dict(i)
                        for issue in issues
                        if not (accept_unseen and issue.kind == "unseen_category")
                    )
        if errors:
            errors.sort(key=lambda e: e["record"])  # stable: fields keep their order
            raise _invalid(errors)
        # One array per kind, transposed so that each column is a contiguous row of it.
        n = len(flags)
        by_number = np.array(numbers, dtype=np.float64).reshape(n, -1).T.copy()
        flat_text = np.empty(len(texts), dtype=object)
        flat_text[:] = texts
        by_text = flat_text.reshape(n, -1).T.copy()
        columns = {
            name: by_number[k] if numeric else by_text[k] for name, numeric, k in self._slots
        }
        return ValidatedBatch(columns=columns, flags=flags)


def _batch_error(kind: IssueKind, detail: str) -> dict[str, Any]:
    return {"record": None, "field": None, "kind": kind, "detail": detail}
