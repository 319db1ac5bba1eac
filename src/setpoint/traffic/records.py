"""Records to send to a server: read from files or JSON text, and planned for a replay.

A replay plan is the records of a file (or a frame, or a list of dicts) in time
order, with each one's true outcome taken out of it. Which columns hold the
time, the outcome and the entity id is never guessed: the caller names them,
or takes them from the project's spec with :meth:`ReplayColumns.from_spec`.

>>> plan = plan_replay(
...     [{"id": "b", "at": "2024-01-02", "y": 0}, {"id": "a", "at": "2024-01-01", "y": 1}],
...     columns=ReplayColumns(time="at", label="y", entity="id"),
... )
>>> plan.records
[{'id': 'a', 'at': '2024-01-01'}, {'id': 'b', 'at': '2024-01-02'}]
>>> plan.labels
[True, False]
>>> plan.first.isoformat()
'2024-01-01T00:00:00+00:00'
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from setpoint.errors import DataError, InvalidParameterError, SchemaError, SourceError

if TYPE_CHECKING:
    from setpoint.config.spec import ProjectSpec

__all__ = [
    "RECORD_SUFFIXES",
    "ReplayColumns",
    "ReplayPlan",
    "frame_records",
    "parse_records",
    "plan_replay",
    "read_records",
]

RECORD_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")
_SHOWN_COLUMNS = 12  # column names spelled out in a "no such column" message


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of a .json, .jsonl, .csv or .parquet file, as JSON-ready dicts.

    A .json file holds one object, a list of them or ``{"records": [...]}``; a
    .jsonl file one object a line. Tables keep their cells as JSON values: times
    as ISO 8601 text, NaN and NaT as None. Raises :class:`SourceError` naming
    the file (and the line of a .jsonl file) when it cannot be read.
    """
    path = Path(path)
    found = _read(path)
    return frame_records(found) if isinstance(found, pd.DataFrame) else found


def parse_records(text: str, *, source: str = "JSON text") -> list[dict[str, Any]]:
    """The records of JSON text: one object, a list of them or ``{"records": [...]}``.

    >>> parse_records('{"distance": 1400}')
    [{'distance': 1400}]
    >>> parse_records("[1]", source="--json")
    Traceback (most recent call last):
    ...
    setpoint.errors.SourceError: --json: expected a list of JSON objects; item 0 is a int
    """
    return _as_records(_json(text, where=source), source=source)


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: times as ISO 8601 strings, NaN and NaT as None."""
    frame = frame.copy()
    frame.columns = [str(name) for name in frame.columns]
    for name in frame.columns:
        if pd.api.types.is_datetime64_any_dtype(frame[name]):
            frame[name] = [None if pd.isna(t) else t.isoformat() for t in frame[name]]
    cells = frame.astype(object).where(frame.notna(), None)
    return [dict(zip(frame.columns, row, strict=True)) for row in cells.itertuples(index=False)]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayColumns:
    """Which columns hold each record's time, its true outcome and its entity id.

    The time orders the replay and is sent with the record (the server's event
    clock reads it). The label is the outcome, taken out of the records and
    posted as feedback; None sends every column. The entity id, when named,
    must be in the records: the server logs it and keys canaries by it.
    """

    time: str
    label: str | None = None
    entity: str | None = None

    def __post_init__(self) -> None:
        for name in ("time", "label", "entity"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise InvalidParameterError(
                    owner="ReplayColumns", parameter=name, expected="a column name", got=value
                )
        if self.label is not None and self.label in (self.time, self.entity):
            raise InvalidParameterError(
                owner="ReplayColumns",
                parameter="label",
                expected="a column other than the time and the entity",
                got=self.label,
            )

    @classmethod
    def from_spec(
        cls,
        spec: ProjectSpec,
        *,
        time: str | None = None,
        label: str | None = None,
        entity: str | None = None,
    ) -> ReplayColumns:
        """The spec's ``timestamp``, ``target`` and ``entity``; a name given here wins."""
        time = time if time is not None else spec.timestamp
        if time is None:
            raise SchemaError(
                f"the spec of project {spec.project!r} names no 'timestamp' column, and a "
                "replay needs one to send the records in time order; name it with time=",
                column=None,
            )
        return cls(
            time=time,
            label=label if label is not None else spec.target,
            entity=entity if entity is not None else spec.entity,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayPlan:
    """Records in time order, each one's time and true outcome.

    ``labels[i]`` is the outcome of ``records[i]``, None where it is unknown;
    ``labels`` is None when the records have no label column. ``notes`` say
    what was left out and why.
    """

    records: list[dict[str, Any]]
    times: list[datetime]
    labels: list[Any] | None
    source: str = "records"
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        def wrong(parameter: str, expected: str, got: object) -> InvalidParameterError:
            return InvalidParameterError(
                owner="ReplayPlan", parameter=parameter, expected=expected, got=got
            )

        if not self.records:
            raise wrong("records", "at least one record", self.records)
        if len(self.times) != len(self.records):
            raise wrong("times", f"one per record ({len(self.records)})", len(self.times))
        if self.labels is not None and len(self.labels) != len(self.records):
            raise wrong("labels", f"one per record ({len(self.records)})", len(self.labels))
        # The feedback clock is the time of the record being sent: it must not go back.
        for i in range(1, len(self.times)):
            if self.times[i] < self.times[i - 1]:
                raise wrong("times", "in time order", f"{self.times[i]} after {self.times[i - 1]}")

    @property
    def first(self) -> datetime:
        """The time of the first record."""
        return self.times[0]

    @property
    def last(self) -> datetime:
        """The time of the last record."""
        return self.times[-1]


def plan_replay(
    source: str | Path | pd.DataFrame | Sequence[Mapping[str, Any]],
    *,
    columns: ReplayColumns,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int | None = None,
) -> ReplayPlan:
    """The records of ``source`` with a time in [start, end), oldest first, at most ``limit``.

    ``source`` is a .parquet, .csv, .json or .jsonl file, a frame, or a list of
    records. Times without an offset are taken as UTC, and so are ``start`` and
    ``end``; records without a time are left out (a note says how many). The
    label column is taken out of the records; a source without it replays with
    no outcomes (a note says so). Ties keep the source's order.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidParameterError(
            owner="plan_replay", parameter="limit", expected="an int >= 1 or None", got=limit
        )
    if isinstance(source, str | Path):
        where = str(source)
        found: pd.DataFrame | list[dict[str, Any]] = _read(Path(source))
    elif isinstance(source, pd.DataFrame):
        where, found = "the frame", source
    else:
        where = "the records"
        rows = [dict(r) if isinstance(r, Mapping) else r for r in source]
        found = _as_records(rows, source=where)
    names = (
        [str(c) for c in found.columns]
        if isinstance(found, pd.DataFrame)
        else list(dict.fromkeys(k for r in found for k in r))
    )
    for role, column in (("time", columns.time), ("entity", columns.entity)):
        if column is not None and column not in names:
            raise SchemaError(
                f"{where} has no {column!r} column (the {role} column); its columns are "
                + _listed(names),
                column=column,
            )
    if isinstance(found, pd.DataFrame):
        found = found.reset_index(drop=True)
        found.columns = names  # as named in the records sent, and in ``columns``
        values = found[columns.time]
    else:
        values = pd.Series([r.get(columns.time) for r in found], dtype=object)
    times = _times(values, column=columns.time, where=where)
    order = _order(times, start=start, end=end, limit=limit, column=columns.time, where=where)
    notes: list[str] = []
    if (missing := int(times.isna().sum())) > 0:
        notes.append(f"{where}: {missing:,} record(s) with no {columns.time} are not sent.")
    label = columns.label
    if label is not None and label not in names:
        notes.append(f"{where} has no {label!r} column: no feedback will be posted.")
        label = None
    records, labels = _pick(found, order, label=label)
    return ReplayPlan(
        records=records,
        times=[t.to_pydatetime() for t in times.iloc[order]],
        labels=labels,
        source=where,
        notes=tuple(notes),
    )


def _pick(
    found: pd.DataFrame | list[dict[str, Any]],
    order: np.ndarray[Any, np.dtype[np.intp]],
    *,
    label: str | None,
) -> tuple[list[dict[str, Any]], list[Any] | None]:
    """The records at ``order`` without their label column, and their labels."""
    if isinstance(found, pd.DataFrame):
        chosen = found.iloc[order]
        if label is None:
            return frame_records(chosen), None
        return frame_records(chosen.drop(columns=[label])), _labels(chosen[label])
    picked = [found[i] for i in order]
    if label is None:
        return picked, None
    labels = _labels([r.get(label) for r in picked])
    return [{k: v for k, v in r.items() if k != label} for r in picked], labels


def _read(path: Path) -> pd.DataFrame | list[dict[str, Any]]:
    """A table as a frame, JSON as its records: JSON values are kept as they are."""
    suffix = path.suffix.lower()
    if suffix not in RECORD_SUFFIXES:
        raise SourceError(
            f"expected a file ending in {', '.join(RECORD_SUFFIXES)}; got {path.name!r}",
            source=str(path),
        )
    if not path.is_file():
        raise SourceError("no such file", source=str(path))
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix == ".parquet":
            return pd.read_parquet(path)
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:
        # pandas' and pyarrow's messages name the problem; the path says where.
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SourceError(f"cannot be read: {reason}", source=str(path)) from None
    if suffix == ".json":
        return _as_records(_json(text, where=str(path)), source=str(path))
    records: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            item = _json(line, where=f"{path}:{number}")
            if not isinstance(item, dict):
                raise SourceError(f"line {number} is not a JSON object", source=str(path))
            records.append(item)
    if not records:
        raise SourceError("holds no records", source=str(path))
    return records


def _times(values: pd.Series, *, column: str, where: str) -> pd.Series:
    """UTC times with NaT for a missing one; a value that is not a time is an error."""
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(values, utc=True)
        return parsed.reset_index(drop=True)
    cells = values.astype(object).where(values.notna(), None).tolist()
    # Numbers are refused rather than read as epochs: their unit would be a guess.
    text = [v if isinstance(v, str | datetime) else None for v in cells]
    parsed = pd.to_datetime(
        pd.Series(text, dtype=object), utc=True, errors="coerce", format="ISO8601"
    )
    bad = np.flatnonzero(parsed.isna().to_numpy() & np.array([v is not None for v in cells]))
    if bad.size:
        first = int(bad[0])
        raise SchemaError(
            f"{where}: record {first} has {column} = {cells[first]!r}, not an ISO 8601 date and "
            f"time ({bad.size:,} records like it)",
            column=column,
        )
    return parsed


def _order(
    times: pd.Series,
    *,
    start: datetime | None,
    end: datetime | None,
    limit: int | None,
    column: str,
    where: str,
) -> np.ndarray[Any, np.dtype[np.intp]]:
    """Positions of the records to send, in time order (stable), at most ``limit``."""
    keep = times.notna()
    if start is not None:
        keep &= times >= _utc(start)
    if end is not None:
        keep &= times < _utc(end)
    positions = np.flatnonzero(keep.to_numpy())
    if positions.size == 0:
        span = (
            f"runs from {times.min().isoformat()} to {times.max().isoformat()}"
            if times.notna().any()
            else "has no times at all"
        )
        low = "the start" if start is None else _utc(start).isoformat()
        high = "the end" if end is None else _utc(end).isoformat()
        raise DataError(
            f"no records of {where} have {column} in [{low}, {high}); {where} {span}",
            column=column,
        )
    stamps = times.to_numpy()[positions]
    ordered: np.ndarray[Any, np.dtype[np.intp]] = positions[np.argsort(stamps, kind="stable")]
    return ordered[:limit]


def _utc(when: datetime) -> pd.Timestamp:
    stamp = pd.Timestamp(when)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _labels(values: Sequence[Any] | pd.Series) -> list[Any]:
    """True outcomes as JSON values; outcomes that are all 0 or 1 are binary, sent as booleans.

    A CSV column of 0/1 with a blank reads as floats, so 1.0 counts as 1.

    >>> _labels([1, 0.0, None])
    [True, False, None]
    >>> _labels([1, 2, 0])
    [1, 2, 0]
    """
    out = [_plain(v) for v in (values.tolist() if isinstance(values, pd.Series) else values)]
    known = [v for v in out if v is not None]
    binary = all(isinstance(v, bool) for v in known) or all(
        isinstance(v, int | float) and not isinstance(v, bool) and v in (0, 1) for v in known
    )
    return [None if v is None else bool(v) if binary else v for v in out]


def _plain(value: Any) -> Any:
    """A numpy scalar as its Python value; NaN and NA as None (an unknown outcome)."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def _json(text: str, *, where: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SourceError(f"not valid JSON: {exc}", source=where) from None


def _as_records(data: Any, *, source: str) -> list[dict[str, Any]]:
    """The records in ``data``; a :class:`SourceError` naming ``source`` when there are none."""
    if isinstance(data, dict) and isinstance(data.get("records"), list):
        data = data["records"]
    if isinstance(data, dict):
        return [data]
    if not isinstance(data, list) or not data:
        got = "an empty list" if data == [] else f"a {type(data).__name__}"
        raise SourceError(
            f"expected a JSON object or a non-empty list of objects; got {got}", source=source
        )
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise SourceError(
                f"expected a list of JSON objects; item {i} is a {type(item).__name__}",
                source=source,
            )
    return data


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOWN_COLUMNS])
    more = len(names) - _SHOWN_COLUMNS
    return (shown + (f" and {more} more" if more > 0 else "")) or "none"
