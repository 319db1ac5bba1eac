"""Monitoring results, one row per window of served traffic.

A window is named by its project, model version, window spec (``"1d"``,
``"5000rows"``), clock (``"event"`` or ``"served"``) and start. Its ``result`` is
a plain JSON object (what the monitoring run made of the window): this module
stores and returns it without reading it, so it does not depend on the layer
that computes it. The ``fingerprint`` is the caller's summary of the window's
inputs; a later run that computes the same one may skip the window.

``save_windows`` replaces windows already stored under the same name, all of a
call in one transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from setpoint.errors import InvalidParameterError
from setpoint.store.db import Database
from setpoint.store.tables import monitor_windows

__all__ = ["CLOCKS", "StoredWindow", "latest_window", "load_windows", "save_windows"]

CLOCKS = ("event", "served")
_MAX_PROJECT = 64
_MAX_WINDOW = 32
_MAX_FINGERPRINT = 128
_MAX_INT = 2**31 - 1  # the counts and the version are 32-bit integer columns
_KEY = ("project", "model_version", "window", "clock", "window_start")


@dataclass(frozen=True, slots=True)
class StoredWindow:
    """One monitored window. Times are timezone-aware; they read back in UTC."""

    project: str
    version: int
    window: str
    clock: str
    start: datetime
    end: datetime
    n: int
    n_labelled: int
    fingerprint: str
    result: dict[str, Any]
    computed_at: datetime


def _fail(owner: str, parameter: str, expected: str, got: Any) -> InvalidParameterError:
    return InvalidParameterError(owner=owner, parameter=parameter, expected=expected, got=got)


def _storable(value: str) -> bool:
    # PostgreSQL refuses NUL in text, and no backend takes a lone surrogate
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_text(owner: str, parameter: str, value: Any, *, limit: int) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= limit or not _storable(value):
        raise _fail(owner, parameter, f"a text of 1 to {limit} characters", value)
    return value


def _check_count(owner: str, parameter: str, value: Any, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= _MAX_INT:
        raise _fail(owner, parameter, f"an integer in [{low}, {_MAX_INT}]", value)
    return value


def _check_window(owner: str, value: Any) -> str:
    text = _check_text(owner, "window", value, limit=_MAX_WINDOW)
    if text != text.strip() or not text.isprintable():
        raise _fail(owner, "window", "a window spec such as '1d' or '5000rows'", value)
    return text


def _check_clock(owner: str, value: Any) -> str:
    if value not in CLOCKS:
        raise _fail(owner, "clock", f"one of {list(CLOCKS)}", value)
    return str(value)


def _check_time(parameter: str, value: Any) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        # a naive time would be read as UTC and come back different from what was given
        raise _fail("save_windows", parameter, "a timezone-aware datetime", value)
    return value


def _row(
    position: int, item: Any, *, project: str, version: int, window: str, clock: str
) -> dict[str, Any]:
    """The table row of ``windows[position]``; ``InvalidParameterError`` naming what is wrong."""
    where = f"windows[{position}]"
    if not isinstance(item, StoredWindow):
        raise _fail("save_windows", where, "a StoredWindow", item)
    given = (item.project, item.version, item.window, item.clock)
    if given != (project, version, window, clock):
        raise _fail(
            "save_windows",
            f"{where}.project/version/window/clock",
            f"the call's {(project, version, window, clock)}",
            given,
        )
    start = _check_time(f"{where}.start", item.start)
    end = _check_time(f"{where}.end", item.end)
    if end < start:  # equal is fine: a count window of one prediction
        raise _fail("save_windows", f"{where}.end", f"at or after its start {start}", end)
    n = _check_count("save_windows", f"{where}.n", item.n, low=0)
    labelled = _check_count("save_windows", f"{where}.n_labelled", item.n_labelled, low=0)
    if labelled > n:
        raise _fail("save_windows", f"{where}.n_labelled", f"at most n ({n})", labelled)
    fingerprint = _check_text(
        "save_windows", f"{where}.fingerprint", item.fingerprint, limit=_MAX_FINGERPRINT
    )
    if not isinstance(item.result, dict):
        raise _fail("save_windows", f"{where}.result", "a JSON object (a dict)", item.result)
    try:
        # ensure_ascii escapes NUL and lone surrogates, so any text can hold the document
        result = json.dumps(item.result, allow_nan=False, ensure_ascii=True)
    except (TypeError, ValueError) as exc:
        raise _fail(
            "save_windows", f"{where}.result", "a JSON object without NaN or Infinity", str(exc)
        ) from None
    return {
        "project": project,
        "model_version": version,
        "window": window,
        "clock": clock,
        "window_start": start,
        "window_end": end,
        "n": n,
        "n_labelled": labelled,
        "fingerprint": fingerprint,
        "result": result,
        "computed_at": _check_time(f"{where}.computed_at", item.computed_at),
    }


def _upsert(conn: Connection) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    insert = dialect.insert(monitor_windows)
    # ON CONFLICT rather than delete-then-insert: two concurrent PostgreSQL writers of one
    # window then both succeed (the later wins) instead of one failing on the primary key
    return insert.on_conflict_do_update(
        index_elements=list(_KEY),
        set_={c.name: insert.excluded[c.name] for c in monitor_windows.c if c.name not in _KEY},
    )


def save_windows(
    db: Database,
    *,
    project: str,
    version: int,
    window: str,
    clock: str,
    windows: list[StoredWindow],
) -> int:
    """Store ``windows`` of one project, version, window spec and clock; the count stored.

    A window already stored with the same start is replaced. Every window is
    checked first and all are written in one transaction, so a bad one (raised
    as ``InvalidParameterError`` naming it) stores nothing.
    """
    _check_text("save_windows", "project", project, limit=_MAX_PROJECT)
    _check_count("save_windows", "version", version, low=1)
    _check_window("save_windows", window)
    _check_clock("save_windows", clock)
    if not isinstance(windows, list | tuple):
        raise _fail("save_windows", "windows", "a list of StoredWindow", windows)
    rows = [
        _row(i, item, project=project, version=version, window=window, clock=clock)
        for i, item in enumerate(windows)
    ]
    seen: dict[datetime, int] = {}
    for i, row in enumerate(rows):
        # one statement cannot update a row twice (PostgreSQL refuses), nor should a caller mean to
        first = seen.setdefault(row["window_start"], i)
        if first != i:
            raise _fail(
                "save_windows",
                f"windows[{i}].start",
                f"unique in the call (windows[{first}] has it too)",
                row["window_start"],
            )
    if rows:
        with db.write() as conn:
            conn.execute(_upsert(conn), rows)
    return len(rows)


def _stored(row: Any) -> StoredWindow:
    return StoredWindow(
        project=row.project,
        version=row.model_version,
        window=row.window,
        clock=row.clock,
        start=row.window_start,
        end=row.window_end,
        n=row.n,
        n_labelled=row.n_labelled,
        fingerprint=row.fingerprint,
        result=json.loads(row.result),
        computed_at=row.computed_at,
    )


def load_windows(
    db: Database,
    *,
    project: str,
    version: int | None = None,
    window: str | None = None,
    clock: str | None = None,
) -> list[StoredWindow]:
    """The project's stored windows, those of ``version``, ``window`` and ``clock`` if given.

    Ordered by version, window spec, clock and start.
    """
    _check_text("load_windows", "project", project, limit=_MAX_PROJECT)
    query = sa.select(monitor_windows).where(monitor_windows.c.project == project)
    if version is not None:
        _check_count("load_windows", "version", version, low=1)
        query = query.where(monitor_windows.c.model_version == version)
    if window is not None:
        query = query.where(monitor_windows.c.window == _check_window("load_windows", window))
    if clock is not None:
        query = query.where(monitor_windows.c.clock == _check_clock("load_windows", clock))
    query = query.order_by(*(monitor_windows.c[name] for name in _KEY[1:]))
    with db.read() as conn:
        rows = conn.execute(query).all()
    return [_stored(row) for row in rows]


def latest_window(db: Database, *, project: str) -> StoredWindow | None:
    """The project's window that ends last (the last computed among those), or None."""
    _check_text("latest_window", "project", project, limit=_MAX_PROJECT)
    c = monitor_windows.c
    query = (
        sa.select(monitor_windows)
        .where(c.project == project)
        # the rest of the key only makes the choice among exact ties repeatable
        .order_by(
            c.window_end.desc(), c.computed_at.desc(), c.model_version.desc(), c.window, c.clock
        )
        .limit(1)
    )
    with db.read() as conn:
        row = conn.execute(query).first()
    return None if row is None else _stored(row)
