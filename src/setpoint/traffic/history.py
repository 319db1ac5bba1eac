"""What a retrain may learn from, and the served traffic as it stood at a moment.

A label counts from the moment it was *received*, so a look or a retrain at
``as_of`` sees exactly the labels that existed then, as the replay does.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from setpoint.errors import NotFoundError, StoreError
from setpoint.registry.datasets import load_dataset
from setpoint.registry.feedback import LabelRule, list_feedback
from setpoint.store.workspace import Store
from setpoint.traffic.frames import (
    SERVED_ROLES,
    Traffic,
    decode_traffic,
    join_feedback,
    load_traffic,
)
from setpoint.traffic.segments import SCHEMA

__all__ = ["LABEL_TIME", "history", "traffic_as_of"]

# The column of ``history`` that says when each row's label arrived.
LABEL_TIME = "__label_time__"


def traffic_as_of(
    store: Store,
    *,
    project: str,
    as_of: datetime,
    roles: tuple[str, ...] = SERVED_ROLES,
    rule: LabelRule | None = None,
) -> Traffic:
    """Predictions in ``roles`` served up to ``as_of``, with the labels received by then.

    Empty (no rows) when nothing was logged yet. ``rule`` leaves out the labels the
    model of that target cannot be judged on (``join_feedback``).
    """
    try:
        logged = load_traffic(store, project=project, roles=roles)
    except StoreError:
        return decode_traffic(SCHEMA.empty_table(), roles=roles)
    keep = (pd.to_datetime(logged.meta["time"], utc=True) <= pd.Timestamp(as_of)).to_numpy()
    return join_feedback(
        logged.take(keep), list_feedback(store.db, project=project), as_of=as_of, rule=rule
    )


def history(
    store: Store,
    *,
    project: str,
    target: str,
    timestamp: str | None,
    entity: str | None,
    as_of: datetime,
    rule: LabelRule | None = None,
) -> pd.DataFrame:
    """Every labelled row a retrain at ``as_of`` may learn from, with its ``LABEL_TIME``.

    The ingested ``events`` (labelled when they were stored: a batch holds its
    outcomes) and the served traffic whose labels arrived by ``as_of``: its
    inputs, ``target`` set to the label, and ``LABEL_TIME``. With ``rule``, a
    served row whose stored label is not one of the target's is not learned from.
    """
    parts: list[pd.DataFrame] = []
    try:
        ingested, batches = load_dataset(store, project=project, name="events")
    except NotFoundError:
        ingested, batches = pd.DataFrame(), []
    if len(ingested) and batches:
        stored_at = max(batch.created_at for batch in batches)
        if stored_at <= as_of:
            parts.append(ingested.assign(**{LABEL_TIME: pd.Timestamp(stored_at)}))
    served = traffic_as_of(store, project=project, as_of=as_of, rule=rule)
    labelled = served.meta["label_time"].notna().to_numpy()
    if labelled.any():
        rows = served.take(labelled)
        frame = rows.inputs.copy()
        frame[target] = rows.meta["label"].to_numpy(dtype=object)
        frame[LABEL_TIME] = rows.meta["label_time"].to_numpy()
        parts.append(frame)
    if not parts:
        return pd.DataFrame(columns=[target, LABEL_TIME])
    if timestamp:
        # Served inputs carry times as text; ingested batches as datetimes.
        parts = [
            part.assign(**{timestamp: _utc(part[timestamp])}) for part in parts if timestamp in part
        ]
    frame = pd.concat(parts, ignore_index=True, sort=False)
    if entity and entity in frame:
        # A row served and also ingested later is one row, the newest copy.
        frame = frame.drop_duplicates(subset=[entity], keep="last")
    return frame.reset_index(drop=True)


def _utc(values: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        return pd.to_datetime(values, utc=True)
    return pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")
