"""Check a batch against a schema: keep the good rows, quarantine the bad ones.

Every rule is a vectorized mask over the whole batch; Python loops only run
over the anomalies found, to word them. A row is bad when any rule flags one
of its cells; each bad row carries the list of its anomalies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import pandas_dtype

from setpoint.config.spec import ValidationPolicy
from setpoint.data._coerce import as_boolean, as_datetime, as_numeric, as_text, null_tokens
from setpoint.data.schema import ColumnSchema, Schema
from setpoint.data.validation_report import Anomaly, AnomalyKind, ValidationReport
from setpoint.errors import InvalidParameterError, SchemaError

__all__ = ["Anomaly", "AnomalyKind", "ValidationReport", "validate_batch"]

# A column where more than this share of values do not convert is reported
# once at batch level as well: its type, not a few of its rows, is wrong.
_WHOLE_COLUMN_SHARE = 0.5
_NOUNS = {"numeric": "a number", "boolean": "a boolean", "datetime": "an ISO 8601 timestamp"}


@dataclass
class _Finding:
    """Cells flagged by one rule; ``template`` words each, "{v}" standing for its value."""

    kind: AnomalyKind
    column: str
    mask: np.ndarray
    values: pd.Series
    template: str

    def details(self, positions: np.ndarray) -> list[str]:
        return [self.template.replace("{v}", _fmt(v)) for v in self.values.iloc[positions]]


@dataclass
class _Column:
    """A column converted to its kind, its missing values, and what the rules found."""

    converted: pd.Series
    nulls: np.ndarray
    failed: np.ndarray | None = None
    findings: list[_Finding] = field(default_factory=list)

    def add(
        self, kind: AnomalyKind, column: str, mask: np.ndarray, values: pd.Series, template: str
    ) -> None:
        self.findings.append(_Finding(kind, column, mask, values, template))


def validate_batch(
    df: pd.DataFrame,
    schema: Schema,
    *,
    policy: ValidationPolicy,
    known_ids: Iterable[Any] | None = None,
) -> ValidationReport:
    """Validate ``df`` against ``schema`` under ``policy``.

    ``known_ids`` are entity ids already ingested: rows repeating one are
    ``duplicate_id``. Within the batch, the first good row of an id is kept.
    Missing values in a nullable column are not anomalies; in a non-nullable
    one they are ``unexpected_null`` (``missing_target`` for the target).
    """
    _check_arguments(df, schema, policy)
    labels = {str(c): c for c in df.columns}
    if len(labels) != df.shape[1]:
        names = [str(c) for c in df.columns]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        raise SchemaError(
            f"The batch has duplicate column names: {duplicated}.", column=duplicated[0]
        )
    n = len(df)
    batch, missing_required = _column_set(schema, list(labels))
    checked: dict[str, _Column] = {}
    for col in schema.columns:
        if col.name in labels:
            raw = df[labels[col.name]].reset_index(drop=True)
            checked[col.name] = _check_column(raw, col, schema=schema, policy=policy)
            batch += _column_anomalies(raw, col, checked[col.name], policy)

    findings = [f for c in checked.values() for f in c.findings]
    bad = np.zeros(n, dtype=bool)
    for finding in findings:
        bad |= finding.mask
    if schema.entity is not None and schema.entity in checked:
        # After the other rules, so that the first *good* row of an id is kept.
        duplicates = _duplicate_ids(checked[schema.entity], schema.entity, bad, known_ids)
        findings += duplicates
        for finding in duplicates:
            bad |= finding.mask

    bad_positions = np.flatnonzero(bad)
    reasons, counts = _reasons(findings, bad_positions)
    for anomaly in batch:
        counts[anomaly.kind.value] += 1

    n_bad = len(bad_positions)
    bad_share = n_bad / n if n else 0.0
    refusal = None
    if missing_required:
        refusal = f"required columns are missing: {missing_required}"
    elif bad_share > policy.max_bad_share:
        refusal = (
            f"{bad_share:.1%} of the rows are bad, more than the allowed {policy.max_bad_share:.1%}"
        )
    bad_rows = df.iloc[bad_positions].drop(columns="_row", errors="ignore")
    bad_rows.insert(0, "_row", df.index[bad_positions])
    return ValidationReport(
        columns=_columns_by_kind(findings, batch),
        clean=_clean_frame(df, schema, checked, ~bad),
        bad=bad_rows.reset_index(drop=True),
        reasons=reasons,
        batch_anomalies=batch,
        counts=counts,
        n_rows=n,
        n_bad=n_bad,
        bad_share=bad_share,
        refused=refusal is not None,
        refusal=refusal,
    )


def _column_set(schema: Schema, present: list[str]) -> tuple[list[Anomaly], list[str]]:
    """Missing and unexpected columns, and the missing ones that refuse the batch."""
    found: list[Anomaly] = []
    refusing: list[str] = []
    roles = {schema.target, schema.timestamp, schema.entity}
    given = set(present)
    for col in schema.columns:
        if col.name not in given:
            required = col.name in roles or not col.nullable
            if required:
                refusing.append(col.name)
            what = (
                "required, so the batch is refused" if required else "nullable, filled with nulls"
            )
            found.append(
                Anomaly(AnomalyKind.MISSING_COLUMN, col.name, f"absent from the batch ({what})")
            )
    known = set(schema.names)
    found += [
        Anomaly(
            AnomalyKind.UNEXPECTED_COLUMN, name, "not in the schema; left out of the clean rows"
        )
        for name in present
        if name not in known
    ]
    return found, refusing


def _columns_by_kind(findings: list[_Finding], batch: list[Anomaly]) -> dict[str, list[str]]:
    """For each anomaly kind found, the columns it was found in, in schema order."""
    found: dict[str, list[str]] = {}
    flagged = [(f.kind, f.column) for f in findings if f.mask.any()]
    for kind, column in flagged + [(a.kind, a.column) for a in batch]:
        names = found.setdefault(kind.value, [])
        if column is not None and column not in names:
            names.append(column)
    return found


def _reasons(
    findings: list[_Finding], bad_positions: np.ndarray
) -> tuple[list[list[Anomaly]], dict[str, int]]:
    """Each bad row's anomalies, and how many of each kind there are."""
    reasons: list[list[Anomaly]] = [[] for _ in bad_positions]
    counts = {kind.value: 0 for kind in AnomalyKind}
    for finding in findings:
        positions = np.flatnonzero(finding.mask)
        if not len(positions):
            continue
        counts[finding.kind.value] += len(positions)
        slots = np.searchsorted(bad_positions, positions)
        for slot, detail in zip(slots.tolist(), finding.details(positions), strict=True):
            reasons[slot].append(Anomaly(finding.kind, finding.column, detail))
    return reasons, counts


def _check_arguments(df: Any, schema: Any, policy: Any) -> None:
    expected = (
        ("df", df, pd.DataFrame, "a pandas DataFrame"),
        ("schema", schema, Schema, "a Schema"),
        ("policy", policy, ValidationPolicy, "a ValidationPolicy"),
    )
    for parameter, value, kind, text in expected:
        if not isinstance(value, kind):
            raise InvalidParameterError(
                owner="validate_batch", parameter=parameter, expected=text, got=type(value).__name__
            )


def _check_column(
    raw: pd.Series, col: ColumnSchema, *, schema: Schema, policy: ValidationPolicy
) -> _Column:
    name = col.name
    raw_nulls = raw.isna().to_numpy(dtype=bool)
    if col.kind in ("categorical", "text"):
        out = _Column(as_text(raw), raw_nulls)
        if col.categories is not None and policy.unseen_category == "quarantine":
            unseen = ~raw_nulls & ~out.converted.isin(col.categories).to_numpy(dtype=bool)
            known = _shown_categories(col.categories)
            out.add(AnomalyKind.UNSEEN_CATEGORY, name, unseen, raw, "{v} is not one of " + known)
    else:
        if col.kind == "numeric":
            converted = as_numeric(raw)
        elif col.kind == "boolean":
            converted = as_boolean(raw)
        else:
            converted = as_datetime(raw, tz=_tz_of(col.dtype))
        unconverted = ~raw_nulls & converted.isna().to_numpy(dtype=bool)
        tokens = null_tokens(raw, unconverted)
        failed = unconverted & ~tokens
        out = _Column(converted, raw_nulls | tokens, failed=failed)
        if col.kind == "datetime":
            kind = AnomalyKind.UNPARSEABLE_TIMESTAMP
        else:
            kind = AnomalyKind.TYPE_MISMATCH
        out.add(kind, name, failed, raw, "{v} is not " + _NOUNS[col.kind])
        if col.kind == "numeric":
            _numeric_rules(out, raw, col, policy)
    if name == schema.target:
        out.add(AnomalyKind.MISSING_TARGET, name, out.nulls, raw, "the target is missing")
    elif not col.nullable:
        out.add(AnomalyKind.UNEXPECTED_NULL, name, out.nulls, raw, "missing, and not nullable")
    return out


def _numeric_rules(
    out: _Column, raw: pd.Series, col: ColumnSchema, policy: ValidationPolicy
) -> None:
    converted = out.converted
    if converted.dtype.kind in "iu":
        # Integers are finite and whole; only their range needs checking.
        values = converted.to_numpy()
        finite = np.ones(len(values), dtype=bool)
    else:
        values = converted.to_numpy(dtype="float64", na_value=np.nan)
        finite = np.isfinite(values)
        out.add(AnomalyKind.NON_FINITE, col.name, np.isinf(values), raw, "{v} is not finite")
        if col.dtype == "int64":
            whole = finite.copy()
            kept = values[finite]
            whole[finite] = (kept == np.floor(kept)) & (np.abs(kept) < 2**63)
            out.add(
                AnomalyKind.TYPE_MISMATCH,
                col.name,
                finite & ~whole,
                raw,
                "{v} is not a 64-bit integer",
            )
    if policy.out_of_range == "quarantine" and (col.min is not None or col.max is not None):
        low, high = _bounds(col, policy.range_slack)
        outside = np.zeros(len(values), dtype=bool)
        outside[finite] = (values[finite] < low) | (values[finite] > high)
        interval = f"[{_fmt(low)}, {_fmt(high)}]"
        out.add(
            AnomalyKind.OUT_OF_RANGE, col.name, outside, converted, "{v} is outside " + interval
        )


def _bounds(col: ColumnSchema, slack: float) -> tuple[float, float]:
    """The accepted interval: the schema's range widened by ``slack`` times its width.

    >>> _bounds(ColumnSchema(name="x", kind="numeric", dtype="float64", nullable=False,
    ...                      min=0.0, max=10.0), 0.1)
    (-1.0, 11.0)
    """
    low = -np.inf if col.min is None else col.min
    high = np.inf if col.max is None else col.max
    if slack and col.min is not None and col.max is not None:
        # Python floats: a width beyond 1.8e308 becomes inf instead of warning.
        width = float(col.max) - float(col.min)
        low, high = low - slack * width, high + slack * width
    return float(low), float(high)


def _column_anomalies(
    raw: pd.Series, col: ColumnSchema, checked: _Column, policy: ValidationPolicy
) -> list[Anomaly]:
    found: list[Anomaly] = []
    n = len(raw)
    present = n - int(checked.nulls.sum())
    if checked.failed is not None and present:
        failed = int(checked.failed.sum())
        if failed > _WHOLE_COLUMN_SHARE * present:
            example = _fmt(raw.iloc[int(np.argmax(checked.failed))])
            found.append(
                Anomaly(
                    AnomalyKind.TYPE_MISMATCH,
                    col.name,
                    f"{failed:,} of {present:,} values do not convert to {col.kind} "
                    f"(e.g. {example}); the schema says {col.dtype}",
                )
            )
    if n:
        rate = float(checked.nulls.sum()) / n
        if rate - col.null_rate > policy.null_rate_jump:
            found.append(
                Anomaly(
                    AnomalyKind.NULL_RATE_JUMP,
                    col.name,
                    f"null rate {rate:.3f} vs {col.null_rate:.3f} in the schema "
                    f"(allowed rise {policy.null_rate_jump:.3f})",
                )
            )
    return found


def _duplicate_ids(
    entity: _Column, name: str, bad: np.ndarray, known_ids: Iterable[Any] | None
) -> list[_Finding]:
    ids = entity.converted
    present = ~entity.nulls & ids.notna().to_numpy(dtype=bool)
    candidates = present & ~bad
    repeated = np.zeros(len(ids), dtype=bool)
    repeated[candidates] = ids[candidates].duplicated(keep="first").to_numpy(dtype=bool)
    out = _Column(ids, entity.nulls)
    out.add(AnomalyKind.DUPLICATE_ID, name, repeated, ids, "id {v} is in an earlier row")
    if known_ids is not None:
        known = _same_kind(pd.Series(list(known_ids), dtype=object), ids)
        seen = present & _isin(ids, known)
        out.add(AnomalyKind.DUPLICATE_ID, name, seen, ids, "id {v} was already ingested")
    return out.findings


def _isin(values: pd.Series, known: pd.Series) -> np.ndarray:
    """Which ``values`` are among ``known``, by one hash table of the known values.

    ``Series.isin`` on Arrow-backed text makes one Python object per known value:
    13 times slower for the 200,000 ids of a seven-batch dataset.
    """
    table = pd.Index(known.dropna().unique())
    return np.asarray(table.get_indexer(values) >= 0, dtype=bool)


def _same_kind(values: pd.Series, like: pd.Series) -> pd.Series:
    # Known ids may come from a store as strings while the column holds ints.
    if pd.api.types.is_numeric_dtype(like.dtype):
        return as_numeric(values)
    if pd.api.types.is_datetime64_any_dtype(like.dtype):
        tz = getattr(like.dt, "tz", None)
        return as_datetime(values, tz=None if tz is None else str(tz))
    return as_text(values)


def _clean_frame(
    df: pd.DataFrame, schema: Schema, checked: dict[str, _Column], good: np.ndarray
) -> pd.DataFrame:
    everything = bool(good.all())
    positions = np.flatnonzero(good)
    index = df.index if everything else df.index.take(positions)
    n_good = len(positions)
    data: dict[str, Any] = {}
    for col in schema.columns:
        if col.name not in checked:
            dtype = {"int64": "float64", "bool": "boolean"}.get(col.dtype, col.dtype)
            empty = pd.Series([None] * n_good, dtype=object)
            data[col.name] = empty.astype(pandas_dtype(dtype)).array
            continue
        values: Any = checked[col.name].converted.array
        if not everything:
            # Positional take on the arrays: masking Series re-indexes each one.
            values = values.take(positions)
        # Only a hand-written schema can ask for a dtype its values refuse;
        # then the converted values are kept as they are.
        target = pandas_dtype(col.dtype)
        if values.dtype != target:
            with contextlib.suppress(TypeError, ValueError, OverflowError):
                values = values.astype(target, copy=False)
        data[col.name] = values
    return pd.DataFrame(data, index=index, columns=schema.names, copy=False)


def _tz_of(dtype: str) -> str | None:
    """The timezone in a datetime dtype string.

    >>> _tz_of("datetime64[us, UTC]"), _tz_of("datetime64[us]")
    ('UTC', None)
    """
    inside = dtype.partition("[")[2].rstrip("]")
    _, _, tz = inside.partition(",")
    return tz.strip() or None


def _shown_categories(categories: tuple[str, ...]) -> str:
    shown = ", ".join(map(repr, categories[:5]))
    return "{" + shown + (f", ... ({len(categories)} in all)" if len(categories) > 5 else "") + "}"


def _fmt(value: Any) -> str:
    """A value, short, for a message.

    >>> _fmt("abc"), _fmt(2.5), _fmt(1e308), _fmt("x" * 80)[-5:]
    ("'abc'", '2.5', '1e+308', "x...'")
    """
    if isinstance(value, float | np.floating):
        return f"{float(value):.6g}"
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= 60 else text[:56] + "...'"
