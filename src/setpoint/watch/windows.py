"""The prediction log as a frame, joined to its feedback and cut into windows.

A window is a length of time aligned to UTC calendar boundaries (``1h``, ``6h``,
``1d``, ``1w``; weeks start on Monday) or a count of consecutive predictions
(``5000rows``). Only ``champion`` and ``canary`` rows are read: those are the
answers clients received; a ``shadow`` row is another model's opinion.

>>> parse_window("1w")
WindowSpec(text='1w', unit='w', size=1)
>>> parse_window("5000rows").unit
'rows'
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from setpoint._json import loads
from setpoint.errors import ConfigError, StoreError
from setpoint.serve.predlog import read_logs

if TYPE_CHECKING:
    from setpoint.registry.feedback import Feedback
    from setpoint.store.workspace import Store

__all__ = [
    "SERVED_ROLES",
    "WINDOW_HELP",
    "Traffic",
    "Window",
    "WindowSpec",
    "cut_windows",
    "decode_traffic",
    "join_feedback",
    "load_traffic",
    "parse_window",
]

SERVED_ROLES = ("champion", "canary")
WINDOW_HELP = "a length of time (1h, 6h, 1d, 1w) or a count of predictions (5000rows)"
_PATTERN = re.compile(r"\s*(\d+)\s*(h|d|w|rows?)\s*", re.IGNORECASE)
_MICROS = {"h": 3_600_000_000, "d": 86_400_000_000, "w": 7 * 86_400_000_000}
# 1970-01-05 was a Monday: weeks are counted from there, days and hours from the epoch.
_ORIGIN = {"h": 0, "d": 0, "w": 4 * 86_400_000_000}
_META = ("request_id", "index", "entity_id", "time", "model_version", "role")


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """``size`` hours, days or weeks (``unit`` h, d, w), or ``size`` predictions (``rows``)."""

    text: str
    unit: str
    size: int


@dataclass(frozen=True, slots=True)
class Window:
    """Rows ``positions`` of the traffic; ``start <= time < end`` for a time window.

    A count window's ``start`` and ``end`` are its first and last prediction's time.
    """

    start: datetime
    end: datetime
    positions: npt.NDArray[np.intp]


@dataclass(frozen=True, slots=True)
class Traffic:
    """Served predictions, oldest first: ``meta`` and ``inputs`` share their row order.

    ``meta`` has the log's columns (``request_id``, ``index``, ``entity_id``,
    ``time``, ``model_version``, ``role``), the output decoded (``score`` for a
    binary model, ``value`` for a regression, ``predicted`` the returned label)
    and ``label``: the true outcome from feedback, missing until it arrives.
    """

    meta: pd.DataFrame
    inputs: pd.DataFrame

    def __len__(self) -> int:
        return len(self.meta)


def parse_window(text: str) -> WindowSpec:
    """The window ``text`` names; ``ConfigError`` naming the accepted forms otherwise."""
    match = _PATTERN.fullmatch(text) if isinstance(text, str) else None
    size = int(match.group(1)) if match else 0
    if match is None or size < 1:
        raise ConfigError(f"The window {text!r} is not {WINDOW_HELP}.", window=text)
    unit = match.group(2).lower()
    return WindowSpec(text=text.strip(), unit="rows" if unit.startswith("row") else unit, size=size)


def _read_log(store: Store, project: str) -> pa.Table:
    if store.db.url.startswith("postgresql"):
        from setpoint.serve.pglog import DatabasePredictionLog

        plog = DatabasePredictionLog(store.db, project=project)
        try:
            return plog.read()
        finally:
            plog.close()
    return read_logs(store.home / "predictions" / project)


def _decoded(texts: list[str | None]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for text in texts:
        value = loads(text) if text else None
        # an output that is not an object (a bare number) is a regression value
        out.append(value if isinstance(value, dict) else {"value": value})
    return out


def decode_traffic(table: pa.Table, *, roles: tuple[str, ...] = SERVED_ROLES) -> Traffic:
    """Rows of a log table (``predlog.SCHEMA``) logged in ``roles``, inputs and outputs decoded.

    The default is the served rows; the autopilot also reads the shadow's.
    """
    frame = table.to_pandas(types_mapper=None)
    frame = frame[frame["role"].isin(roles)]
    frame = frame.sort_values("time", kind="stable").reset_index(drop=True)
    meta = frame[list(_META)].copy()
    outputs = pd.DataFrame.from_records(_decoded(frame["output"].tolist()), index=meta.index)
    for name in ("score", "value"):
        found = outputs[name] if name in outputs else pd.Series(np.nan, index=meta.index)
        meta[name] = pd.to_numeric(found, errors="coerce").astype(np.float64)
    meta["predicted"] = outputs.get("label", None)
    meta["label"] = pd.Series([None] * len(meta), index=meta.index, dtype=object)
    inputs = pd.DataFrame.from_records(_decoded(frame["inputs"].tolist()), index=meta.index)
    return Traffic(meta=meta, inputs=inputs)


def load_traffic(store: Store, *, project: str, roles: tuple[str, ...] = SERVED_ROLES) -> Traffic:
    """The project's predictions in ``roles``; ``StoreError`` when none were logged."""
    traffic = decode_traffic(_read_log(store, project), roles=roles)
    if not len(traffic):
        where = (
            "the predictions table"
            if store.db.url.startswith("postgresql")
            else str(store.home / "predictions" / project)
        )
        raise StoreError(
            f"No predictions of project {project!r} are logged in {where} yet: run "
            "'setpoint serve' and send it traffic (e.g. 'setpoint replay').",
            project=project,
        )
    return traffic


def join_feedback(traffic: Traffic, feedback: list[Feedback]) -> Traffic:
    """``traffic`` with ``label`` set from ``feedback``.

    A ``req:`` item labels the prediction at (request_id, index); an ``ent:``
    item labels every prediction of its entity. A key by request wins over one
    by entity, being the more precise.
    """
    by_request: dict[tuple[str, int], Any] = {}
    by_entity: dict[str, Any] = {}
    for item in feedback:
        if item.request_id is not None:
            by_request[(item.request_id, int(item.index or 0))] = item.label
        elif item.entity_id is not None:
            by_entity[item.entity_id] = item.label
    meta = traffic.meta
    labels: list[Any] = []
    for rid, idx, entity in zip(
        meta["request_id"].tolist(),
        meta["index"].tolist(),
        meta["entity_id"].tolist(),
        strict=True,
    ):
        label = by_request.get((rid, int(idx)))
        if label is None and entity is not None:
            label = by_entity.get(entity)
        labels.append(label)
    joined = meta.copy()
    joined["label"] = pd.Series(labels, index=meta.index, dtype=object)
    return Traffic(meta=joined, inputs=traffic.inputs)


def _micros(times: pd.Series) -> npt.NDArray[np.int64]:
    utc = pd.to_datetime(times, utc=True).dt.as_unit("us")
    return np.asarray(utc.astype("int64"), dtype=np.int64)


def _datetime(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1_000_000, tz=UTC)


def cut_windows(times: pd.Series, spec: WindowSpec) -> list[Window]:
    """Non-empty windows over ``times`` (sorted, oldest first), in time order."""
    micros = _micros(times)
    if micros.size == 0:
        return []
    if spec.unit == "rows":
        return [
            Window(
                start=_datetime(int(micros[lo])),
                end=_datetime(int(micros[min(lo + spec.size, micros.size) - 1])),
                positions=np.arange(lo, min(lo + spec.size, micros.size), dtype=np.intp),
            )
            for lo in range(0, micros.size, spec.size)
        ]
    period = _MICROS[spec.unit] * spec.size
    origin = _ORIGIN[spec.unit]
    buckets = (micros - origin) // period
    # times are sorted, so each bucket is one run of rows
    edges = [0, *(np.flatnonzero(np.diff(buckets)) + 1).tolist(), micros.size]
    windows: list[Window] = []
    for lo, hi in itertools.pairwise(edges):
        start = int(buckets[lo]) * period + origin
        windows.append(
            Window(
                start=_datetime(start),
                end=_datetime(start + period),
                positions=np.arange(lo, hi, dtype=np.intp),
            )
        )
    return windows
