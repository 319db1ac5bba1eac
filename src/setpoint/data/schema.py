"""The schema of a dataset: what each column holds, inferred once, stored as JSON.

A :class:`Schema` is what batches are validated against. It is inferred from a
reference frame with :func:`infer_schema`, corrected by the ``features:``
overrides of the spec, and stored with a ``version`` so that a dataset's
schema can evolve while old batches keep the one they were checked with.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from setpoint.config.spec import FeatureSpec, ProjectSpec, Task
from setpoint.data._coerce import Kind, plain
from setpoint.data._infer import check_timestamp, describe, infer_kind
from setpoint.errors import InvalidParameterError, SchemaError

__all__ = [
    "ColumnSchema",
    "Kind",
    "Schema",
    "check_feature_types",
    "check_spec_columns",
    "close_matches",
    "infer_schema",
]

_Bound = Annotated[float, Field(allow_inf_nan=False)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSchema(_Frozen):
    """One column: its kind, the dtype clean data gets, and its domain."""

    name: str
    kind: Kind
    dtype: str = Field(description="The pandas dtype of this column in validated data.")
    nullable: bool
    null_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    min: _Bound | None = None
    max: _Bound | None = None
    categories: tuple[str, ...] | None = None
    unique: bool = False

    @field_validator("categories")
    @classmethod
    def _sorted(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if value is None else tuple(sorted(set(value)))

    @model_validator(mode="after")
    def _consistent(self) -> ColumnSchema:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"column {self.name!r}: min {self.min} is greater than max {self.max}")
        if self.nullable and self.dtype in ("int64", "bool"):
            # These numpy dtypes cannot hold a missing value.
            nullable_dtype = "float64" if self.dtype == "int64" else "boolean"
            raise ValueError(
                f"column {self.name!r} is nullable, so its dtype must be {nullable_dtype!r}, "
                f"not {self.dtype!r}"
            )
        return self


class Schema(_Frozen):
    """The columns of a dataset, in order, plus the roles some of them play."""

    columns: tuple[ColumnSchema, ...]
    target: str | None = None
    timestamp: str | None = None
    entity: str | None = None
    excluded: tuple[str, ...] = ()
    version: Annotated[int, Field(ge=1)] = 1
    notes: tuple[str, ...] = Field(default=(), description="What inference wants a human to check.")

    @model_validator(mode="after")
    def _consistent(self) -> Schema:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError("column names must be unique")
        for role in ("target", "timestamp", "entity"):
            value = getattr(self, role)
            if value is not None and value not in names:
                raise ValueError(f"{role} {value!r} is not one of the columns")
        missing = sorted(set(self.excluded) - set(names))
        if missing:
            raise ValueError(f"excluded columns {missing} are not columns")
        return self

    @property
    def names(self) -> list[str]:
        """All column names, in order."""
        return [c.name for c in self.columns]

    def column(self, name: str) -> ColumnSchema:
        """The column called ``name``; a :class:`SchemaError` names close matches if absent."""
        for col in self.columns:
            if col.name == name:
                return col
        raise SchemaError(
            f"The schema has no column {name!r}{close_matches(name, self.names)}.", column=name
        )

    @property
    def feature_columns(self) -> list[str]:
        """Columns a model trains on: all but the target, timestamp, entity and excluded."""
        roles = {self.target, self.timestamp, self.entity, *self.excluded}
        return [c.name for c in self.columns if c.name not in roles]

    @property
    def numeric_columns(self) -> list[str]:
        """Feature columns of kind ``numeric``."""
        return self._features_of("numeric")

    @property
    def categorical_columns(self) -> list[str]:
        """Feature columns of kind ``categorical``."""
        return self._features_of("categorical")

    def _features_of(self, kind: str) -> list[str]:
        features = set(self.feature_columns)
        return [c.name for c in self.columns if c.kind == kind and c.name in features]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict; :meth:`from_dict` reads it back."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schema:
        """Read a dict written by :meth:`to_dict`; a :class:`SchemaError` if it is invalid."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'schema'}: "
                + e["msg"].removeprefix("Value error, ")
                for e in exc.errors()
            )
            raise SchemaError(f"The stored schema is invalid: {problems}") from None


def close_matches(name: str, candidates: list[str]) -> str:
    """A " (did you mean ...?)" hint, or "" when nothing is close.

    >>> close_matches("temprature", ["temp", "temperature", "humid"])
    " (did you mean 'temperature'?)"
    >>> close_matches("zzz", ["temp"])
    ''
    """
    # Case and stray spaces are the likeliest slips in a header: tried first.
    key = name.strip().casefold()
    by_case = [c for c in candidates if c.strip().casefold() == key and c != name]
    close = by_case or difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    return f" (did you mean {', '.join(map(repr, close))}?)" if close else ""


def infer_schema(
    df: pd.DataFrame, *, spec: ProjectSpec, version: int = 1, source: str | None = None
) -> Schema:
    """Infer the schema of ``df`` and apply the spec's ``features:`` overrides.

    Kinds: numbers, and text of which at least 95% are numbers, are
    ``numeric``; booleans ``boolean``; datetimes, and ISO 8601 text in the
    spec's timestamp column, ``datetime``; other text is ``categorical`` when
    it has few distinct values (at most ``spec.validation.max_categories``,
    and each seen twice on average beyond 20) and ``text`` otherwise. The
    entity column is never categorical and gets no range: new ids are expected.
    A column that is entirely null is kept, its kind taken from its dtype, and
    named in ``Schema.notes``, as is a text column that is mostly numbers.

    Raises :class:`SchemaError` when the spec names a column ``df`` lacks, when
    the timestamp column does not hold date-times, and when the target of a
    classification task has a single value (the schema learned from it would
    quarantine every other class). ``source`` names the data in those messages.
    """
    try:
        return _infer_schema(df, spec=spec, version=version)
    except SchemaError as exc:
        if source is None:
            raise
        context = {k: v for k, v in exc.context.items() if k != "column"}
        raise SchemaError(f"{source}: {exc.message}", column=exc.column, **context) from None


def _infer_schema(df: pd.DataFrame, *, spec: ProjectSpec, version: int) -> Schema:
    if not isinstance(df, pd.DataFrame):
        raise InvalidParameterError(
            owner="infer_schema",
            parameter="df",
            expected="a pandas DataFrame",
            got=type(df).__name__,
        )
    if not isinstance(spec, ProjectSpec):
        raise InvalidParameterError(
            owner="infer_schema",
            parameter="spec",
            expected="a ProjectSpec",
            got=type(spec).__name__,
        )
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidParameterError(
            owner="infer_schema", parameter="version", expected="an int >= 1", got=version
        )
    names = [str(c) for c in df.columns]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise SchemaError(f"Duplicate column names: {duplicated}.", column=duplicated[0])
    check_spec_columns(spec, names)
    _check_target_classes(spec, df[df.columns[names.index(spec.target)]])

    columns: list[ColumnSchema] = []
    notes: list[str] = []
    for name, raw in zip(names, df.columns, strict=True):
        series = plain(df[raw])
        override = spec.features.get(name, FeatureSpec())
        kind: Kind
        if name == spec.timestamp:
            check_timestamp(name, series)
            kind = "datetime"
        elif override.type is not None:
            kind = override.type
        elif override.categories is not None:
            kind = "categorical"
        else:
            kind, note = infer_kind(
                series,
                max_categories=spec.validation.max_categories,
                is_entity=name == spec.entity,
            )
            if note is not None:
                notes.append(
                    f"Column {name!r}: {note}. Set features.{name}.type: numeric in the spec "
                    "to quarantine the values that are not numbers instead."
                )
        _check_override(name, kind, override)
        fields = describe(series, kind, is_entity=name == spec.entity)
        col = _apply_override(ColumnSchema(name=name, **fields), override)
        if len(series) and col.null_rate == 1.0:
            notes.append(
                f"Column {name!r} is entirely null; its kind {kind!r} is a guess from its "
                f"dtype. Set features.{name}.type in the spec, or drop the column."
            )
        columns.append(col)
    excluded = tuple(n for n, f in spec.features.items() if f.exclude)
    return Schema(
        columns=tuple(columns),
        target=spec.target,
        timestamp=spec.timestamp,
        entity=spec.entity,
        excluded=excluded,
        version=version,
        notes=tuple(notes),
    )


def _check_target_classes(spec: ProjectSpec, target: pd.Series) -> None:
    if spec.task is Task.REGRESSION:
        return
    distinct = pd.unique(plain(target).dropna())
    if len(distinct) != 1:
        return  # no value at all is for validation to refuse, row by row
    raise SchemaError(
        f"The target {spec.target!r} has one value only ({distinct[0]!r}) in this first batch; "
        f"a {spec.task.value} schema learned from it would quarantine every other class. "
        "Ingest a first batch that holds every class.",
        column=spec.target,
        key="target",
    )


def check_spec_columns(spec: ProjectSpec, names: list[str], *, where: str = "the data") -> None:
    """Raise a :class:`SchemaError` naming each spec key whose column is not in ``names``."""
    named: list[tuple[str, str]] = [("target", spec.target)]
    named += [(role, v) for role in ("timestamp", "entity") if (v := getattr(spec, role))]
    named += [(f"features.{n}", n) for n in spec.features]
    named += [(f"segments[{i}]", n) for i, n in enumerate(spec.segments)]
    absent = [(key, col) for key, col in named if col not in names]
    if not absent:
        return
    problems = "; ".join(f"{key} names {col!r}{close_matches(col, names)}" for key, col in absent)
    shown = ", ".join(map(repr, names[:30])) + (", ..." if len(names) > 30 else "")
    hint = ""
    if len(names) == 1 and any(sep in names[0] for sep in ",;\t|"):
        hint = (
            " It has one column whose name holds separators: is 'delimiter:' of the source right?"
        )
    raise SchemaError(
        f"The spec names columns that are not in {where}: {problems}. {where[0].upper()}"
        f"{where[1:]} has: {shown}.{hint}",
        column=absent[0][1],
        key=absent[0][0],
        missing=dict(absent),
    )


def check_feature_types(spec: ProjectSpec, schema: Schema) -> None:
    """Raise a :class:`SchemaError` if a ``features.<column>.type`` disagrees with ``schema``.

    A stored schema keeps the kinds it was inferred with; a type set in the
    spec afterwards takes effect only in a new schema version.
    """
    for name, feature in spec.features.items():
        if feature.type is None or name not in schema.names:
            continue
        kind = schema.column(name).kind
        if kind != feature.type:
            raise SchemaError(
                f"features.{name}.type is {feature.type!r} in the spec, but schema "
                f"v{schema.version} has {name!r} as {kind}. Ingest a batch with --new-schema "
                "(Python: new_schema=True) to apply the spec, or remove the type.",
                column=name,
                key=f"features.{name}.type",
            )


def _check_override(name: str, kind: Kind, override: FeatureSpec) -> None:
    if (override.min is not None or override.max is not None) and kind != "numeric":
        raise SchemaError(
            f"features.{name}: 'min' and 'max' apply to numeric columns, but {name!r} is "
            f"{kind}; set 'type: numeric' or remove them.",
            column=name,
        )
    if override.categories is not None and kind != "categorical":
        raise SchemaError(
            f"features.{name}: 'categories' apply to categorical columns, but {name!r} is "
            f"{kind}; set 'type: categorical' or remove them.",
            column=name,
        )


def _apply_override(col: ColumnSchema, override: FeatureSpec) -> ColumnSchema:
    changes: dict[str, Any] = {}
    if override.min is not None:
        changes["min"] = override.min
    if override.max is not None:
        changes["max"] = override.max
    low = changes.get("min", col.min)
    high = changes.get("max", col.max)
    if low is not None and high is not None and low > high:
        # One bound came from the spec and the other from the data.
        changes["min" if "min" not in changes else "max"] = None
    if override.categories is not None:
        changes["categories"] = tuple(override.categories)
    if override.nullable is not None:
        changes["nullable"] = override.nullable
        if col.kind == "numeric" and col.dtype == "int64" and override.nullable:
            changes["dtype"] = "float64"
        if col.kind == "boolean":
            changes["dtype"] = "boolean" if override.nullable else "bool"
    if not changes:
        return col
    return ColumnSchema.model_validate({**col.model_dump(), **changes})
