"""What the live loop reads from a project's store: labelled traffic, and the history to learn from.

A label counts from the moment it was *received* (``feedback.received_at``), not
from the event it describes, so a retrain at ``as_of`` sees exactly the labels
that existed then, as the replay does.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from setpoint.errors import NotFoundError, StoreError
from setpoint.project import Project
from setpoint.registry.datasets import load_dataset
from setpoint.registry.feedback import list_feedback
from setpoint.watch.windows import load_traffic

__all__ = ["LABEL_TIME", "history", "traffic"]

LABEL_TIME = "__label_time__"
ROLE, VERSION, SCORE, REQUEST, INDEX, LOGGED = (
    "__role__",
    "__version__",
    "__score__",
    "__request__",
    "__index__",
    "__logged__",
)


def traffic(
    project: Project, *, as_of: datetime, roles: tuple[str, ...] = ("champion", "canary")
) -> pd.DataFrame:
    """Logged predictions in ``roles`` up to ``as_of``: inputs, score, and labels received by then.

    The columns are the request's inputs, the spec's target (missing until its
    label arrived), ``LABEL_TIME`` and the log's own ``ROLE``, ``VERSION``,
    ``SCORE``, ``REQUEST``, ``INDEX`` and ``LOGGED`` (the time it was served).
    An empty frame when nothing was logged yet.
    """
    try:
        logged = load_traffic(project.store, project=project.name, roles=roles)
    except StoreError:
        return pd.DataFrame()
    meta = logged.meta
    cutoff = pd.Timestamp(as_of)
    keep = (pd.to_datetime(meta["time"], utc=True) <= cutoff).to_numpy()
    frame = logged.inputs.loc[keep].copy()
    meta = meta.loc[keep]
    frame[ROLE] = meta["role"].to_numpy()
    frame[VERSION] = pd.to_numeric(meta["model_version"], errors="coerce").to_numpy()
    frame[SCORE] = meta["score"].to_numpy() if "score" in meta else np.nan
    frame[REQUEST] = meta["request_id"].to_numpy()
    frame[INDEX] = meta["index"].astype(int).to_numpy()
    frame[LOGGED] = pd.to_datetime(meta["time"], utc=True).to_numpy()
    labels: dict[tuple[str, int], tuple[object, datetime]] = {}
    by_entity: dict[str, tuple[object, datetime]] = {}
    for item in list_feedback(project.store.db, project=project.name):
        if item.received_at > as_of:
            continue
        if item.request_id is not None:
            labels[(item.request_id, int(item.index or 0))] = (item.label, item.received_at)
        elif item.entity_id is not None:
            by_entity[item.entity_id] = (item.label, item.received_at)
    found: list[tuple[object, datetime] | None] = []
    entities = meta["entity_id"].tolist()
    for rid, idx, entity in zip(frame[REQUEST], frame[INDEX], entities, strict=True):
        hit = labels.get((rid, int(idx)))
        found.append(hit if hit is not None else by_entity.get(entity) if entity else None)
    target = project.spec.target
    frame[target] = pd.Series([f[0] if f else None for f in found], index=frame.index, dtype=object)
    frame[LABEL_TIME] = pd.to_datetime(
        pd.Series([f[1] if f else None for f in found], index=frame.index), utc=True
    )
    return frame.reset_index(drop=True)


def history(project: Project, *, as_of: datetime) -> pd.DataFrame:
    """Every labelled row a retrain at ``as_of`` may learn from, with its ``LABEL_TIME``.

    The ingested ``events`` (labelled when they were stored: a batch holds its
    outcomes) and the served traffic whose labels arrived by ``as_of``.
    """
    spec = project.spec
    parts: list[pd.DataFrame] = []
    try:
        ingested, batches = load_dataset(project.store, project=project.name, name="events")
    except NotFoundError:
        ingested, batches = pd.DataFrame(), []
    if len(ingested) and batches:
        stored_at = max(batch.created_at for batch in batches)
        if stored_at <= as_of:
            parts.append(ingested.assign(**{LABEL_TIME: pd.Timestamp(stored_at)}))
    served = traffic(project, as_of=as_of)
    if len(served):
        parts.append(served[served[LABEL_TIME].notna()])
    if not parts:
        return pd.DataFrame(columns=[spec.target, LABEL_TIME])
    if spec.timestamp:
        # Served inputs carry times as text; ingested batches as datetimes.
        parts = [
            part.assign(**{spec.timestamp: _utc(part[spec.timestamp])})
            for part in parts
            if spec.timestamp in part
        ]
    frame = pd.concat(parts, ignore_index=True, sort=False)
    if spec.entity and spec.entity in frame:
        # A row served and also ingested later is one row, the newest copy.
        frame = frame.drop_duplicates(subset=[spec.entity], keep="last")
    return frame.reset_index(drop=True)


def _utc(values: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        return pd.to_datetime(values, utc=True)
    return pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")
