"""What :func:`~setpoint.data.validate.validate_batch` found, in a shape for people and JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from setpoint.errors import BatchRefusedError

__all__ = ["Anomaly", "AnomalyKind", "ValidationReport"]

_EXAMPLES = 20


class AnomalyKind(StrEnum):
    """What is wrong with a row or a column."""

    MISSING_COLUMN = "missing_column"
    UNEXPECTED_COLUMN = "unexpected_column"
    TYPE_MISMATCH = "type_mismatch"
    OUT_OF_RANGE = "out_of_range"
    UNSEEN_CATEGORY = "unseen_category"
    NULL_RATE_JUMP = "null_rate_jump"
    DUPLICATE_ID = "duplicate_id"
    UNPARSEABLE_TIMESTAMP = "unparseable_timestamp"
    NON_FINITE = "non_finite"
    MISSING_TARGET = "missing_target"
    UNEXPECTED_NULL = "unexpected_null"


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One finding: its kind, the column (None for the whole row) and a sentence.

    >>> Anomaly(AnomalyKind.OUT_OF_RANGE, "age", "-3 is outside [0, 120]").to_dict()
    {'kind': 'out_of_range', 'column': 'age', 'detail': '-3 is outside [0, 120]'}
    """

    kind: AnomalyKind
    column: str | None
    detail: str

    def to_dict(self) -> dict[str, str | None]:
        return {"kind": self.kind.value, "column": self.column, "detail": self.detail}


@dataclass(frozen=True, eq=False)
class ValidationReport:
    """The outcome of :func:`~setpoint.data.validate.validate_batch`.

    ``clean`` holds the good rows converted to the schema's dtypes, in schema
    column order, with the batch's index. ``bad`` holds the bad rows as they
    came, all columns included, with the batch's index label in ``_row``;
    ``reasons[i]`` lists the anomalies of ``bad.iloc[i]``. ``counts`` has one
    entry per :class:`AnomalyKind`: row anomalies plus batch anomalies;
    ``columns`` names, for each kind found, the columns it was found in.
    """

    clean: pd.DataFrame
    bad: pd.DataFrame
    reasons: list[list[Anomaly]]
    batch_anomalies: list[Anomaly]
    counts: dict[str, int]
    n_rows: int
    n_bad: int
    bad_share: float
    refused: bool
    refusal: str | None = None
    columns: dict[str, list[str]] = field(default_factory=dict)

    def summary(self) -> str:
        """A few lines for a terminal or a log."""
        verdict = f"REFUSED: {self.refusal}" if self.refused else "accepted"
        lines = [
            f"{self.n_rows:,} rows: {self.n_bad:,} bad ({self.bad_share:.1%}), "
            f"{len(self.clean):,} clean; {verdict}."
        ]
        found = [f"{kind} {n:,}{self._where(kind)}" for kind, n in self.counts.items() if n]
        if found:
            lines.append("Anomalies: " + ", ".join(found) + ".")
        lines += [f"  {a.kind}: {a.column}: {a.detail}" for a in self.batch_anomalies]
        return "\n".join(lines)

    def _where(self, kind: str) -> str:
        names = self.columns.get(kind, [])
        if not names:
            return ""
        shown = ", ".join(map(repr, names[:5])) + (", ..." if len(names) > 5 else "")
        return f" (in {shown})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict with the figures and the first bad rows' reasons."""
        rows = self.bad["_row"].tolist()[:_EXAMPLES] if len(self.bad) else []
        return {
            "n_rows": self.n_rows,
            "n_bad": self.n_bad,
            "bad_share": self.bad_share,
            "refused": self.refused,
            "refusal": self.refusal,
            "counts": dict(self.counts),
            "columns": {kind: list(names) for kind, names in self.columns.items()},
            "batch_anomalies": [a.to_dict() for a in self.batch_anomalies],
            "examples": [
                {"row": _json_safe(row), "anomalies": [a.to_dict() for a in reasons]}
                for row, reasons in zip(rows, self.reasons, strict=False)
            ],
        }

    def raise_if_refused(self) -> None:
        """Raise :class:`BatchRefusedError` carrying this report if the batch is refused."""
        if self.refused:
            raise BatchRefusedError(f"The batch was refused: {self.refusal}", report=self)


def _json_safe(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    return value if isinstance(value, int | float | str | bool) or value is None else str(value)
