"""The prediction log as frames, and the one join of predictions to their feedback.

Only ``champion`` and ``canary`` rows are read by default: those are the answers
clients received; a ``shadow`` row is another model's opinion, read by the
autopilot when it compares the two.

A label counts from the moment it was *received* (``feedback.received_at``), not
from the event it describes: ``join_feedback(..., as_of=t)`` sees exactly the
labels that existed at ``t``, so a look or a retrain at ``t`` is the same in the
live loop and in a replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from setpoint._json import loads
from setpoint.errors import StoreError
from setpoint.traffic.log import describe_log, read_log

if TYPE_CHECKING:
    from setpoint.registry.feedback import Feedback, LabelRule
    from setpoint.store.workspace import Store

__all__ = [
    "LABEL_SKIPPED",
    "SERVED_ROLES",
    "Traffic",
    "decode_traffic",
    "frame_traffic",
    "join_feedback",
    "load_traffic",
]

SERVED_ROLES = ("champion", "canary")
# The column of a joined ``Traffic.meta`` that says why a row's stored label was not used.
LABEL_SKIPPED = "label_skipped"
_META = ("request_id", "index", "entity_id", "time", "model_version", "role")


@dataclass(frozen=True, slots=True)
class Traffic:
    """Served predictions, oldest first: ``meta`` and ``inputs`` share their row order.

    ``meta`` has the log's columns (``request_id``, ``index``, ``entity_id``,
    ``time``, ``model_version``, ``role``), the output decoded (``score`` for a
    binary model, ``value`` for a regression, ``predicted`` the returned label),
    ``label`` (the true outcome from feedback, missing until it arrives) and
    ``label_time`` (when that label was received).
    """

    meta: pd.DataFrame
    inputs: pd.DataFrame

    def __len__(self) -> int:
        return len(self.meta)

    def take(self, keep: np.ndarray[Any, Any]) -> Traffic:
        """The rows where the boolean mask ``keep`` holds, renumbered from 0."""
        return Traffic(
            meta=self.meta[keep].reset_index(drop=True),
            inputs=self.inputs[keep].reset_index(drop=True),
        )


def _decoded(texts: list[str | None]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for text in texts:
        value = loads(text) if text else None
        # an output that is not an object (a bare number) is a regression value
        out.append(value if isinstance(value, dict) else {"value": value})
    return out


def decode_traffic(table: pa.Table, *, roles: tuple[str, ...] = SERVED_ROLES) -> Traffic:
    """Rows of a log table (``segments.SCHEMA``) logged in ``roles``, decoded."""
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
    meta["label_time"] = pd.Series(pd.NaT, index=meta.index, dtype="datetime64[us, UTC]")
    inputs = pd.DataFrame.from_records(_decoded(frame["inputs"].tolist()), index=meta.index)
    return Traffic(meta=meta, inputs=inputs)


def load_traffic(store: Store, *, project: str, roles: tuple[str, ...] = SERVED_ROLES) -> Traffic:
    """The project's predictions in ``roles``; ``StoreError`` when none were logged."""
    traffic = decode_traffic(read_log(store, project=project), roles=roles)
    if not len(traffic):
        raise StoreError(
            f"No predictions of project {project!r} are logged in "
            f"{describe_log(store, project=project)} yet: run 'setpoint serve' and send it "
            "traffic (e.g. 'setpoint replay').",
            project=project,
        )
    return traffic


def frame_traffic(
    inputs: pd.DataFrame,
    *,
    times: pd.Series,
    scores: np.ndarray[Any, Any],
    labels: pd.Series,
    label_times: pd.Series,
    binary: bool,
    version: str = "champion",
) -> Traffic:
    """Traffic that was never logged (a replay's), shaped as the log's: one row per input.

    ``labels`` is missing where no label had arrived; ``scores`` are the model's.
    """
    n = len(inputs)
    missing = np.full(n, np.nan)
    meta = pd.DataFrame(
        {
            "request_id": np.arange(n).astype(str),
            "index": np.zeros(n, dtype=np.int64),
            "entity_id": pd.Series([None] * n, dtype=object),
            "time": pd.to_datetime(times, utc=True).to_numpy(),
            "model_version": version,
            "role": "champion",
            "score": np.asarray(scores, dtype=np.float64) if binary else missing,
            "value": missing if binary else np.asarray(scores, dtype=np.float64),
            "predicted": pd.Series([None] * n, dtype=object),
            "label": pd.Series(labels.to_numpy(dtype=object), dtype=object),
            "label_time": pd.to_datetime(label_times, utc=True).to_numpy(),
        }
    )
    return Traffic(meta=meta, inputs=inputs.reset_index(drop=True))


def join_feedback(
    traffic: Traffic,
    feedback: list[Feedback],
    *,
    as_of: datetime | None = None,
    rule: LabelRule | None = None,
) -> Traffic:
    """``traffic`` with ``label`` and ``label_time`` from the ``feedback`` received by ``as_of``.

    A ``req:`` item labels the prediction at (request_id, index); an ``ent:``
    item labels every prediction of its entity. A key by request wins over one
    by entity, being the more precise. ``as_of`` None takes every item.

    With ``rule`` (the judged model's target), a stored label the model cannot be
    judged on (one an older version accepted, or one written to the store by hand)
    labels nothing: its rows keep no label and the column ``label_skipped`` (there
    only when ``rule`` is given) says why, so that one bad row is counted instead of
    failing every reader.
    """
    by_request: dict[tuple[str, int], tuple[Any, datetime | None, str | None]] = {}
    by_entity: dict[str, tuple[Any, datetime | None, str | None]] = {}
    for item in feedback:
        if as_of is not None and item.received_at > as_of:
            continue
        why = None if rule is None else rule.problem(item.label)
        entry = (item.label, item.received_at, None) if why is None else (None, None, why[1])
        if item.request_id is not None:
            by_request[(item.request_id, int(item.index or 0))] = entry
        elif item.entity_id is not None:
            by_entity[item.entity_id] = entry
    meta = traffic.meta
    found: list[tuple[Any, datetime | None, str | None] | None] = []
    for rid, idx, entity in zip(
        meta["request_id"].tolist(),
        meta["index"].tolist(),
        meta["entity_id"].tolist(),
        strict=True,
    ):
        hit = by_request.get((rid, int(idx)))
        if hit is None and entity is not None:
            hit = by_entity.get(entity)
        found.append(hit)
    joined = meta.copy()
    joined["label"] = pd.Series(
        [f[0] if f else None for f in found], index=meta.index, dtype=object
    )
    joined["label_time"] = pd.to_datetime(
        pd.Series([f[1] if f else None for f in found], index=meta.index, dtype=object), utc=True
    )
    if rule is not None:  # the column says the labels were judged, and which were not used
        joined[LABEL_SKIPPED] = pd.Series(
            [f[2] if f else None for f in found], index=meta.index, dtype=object
        )
    return Traffic(meta=joined, inputs=traffic.inputs)
